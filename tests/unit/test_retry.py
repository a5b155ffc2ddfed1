"""backoff_delay: fixed and exponential delays, the cap, and jitter with an injected random."""

from __future__ import annotations

import pytest

from jobd.config.settings import Backoff, RetrySettings
from jobd.worker.backoff import backoff_delay

EXPONENTIAL = RetrySettings(backoff=Backoff.EXPONENTIAL, base=1.0, max=60.0, jitter=False)


def test_fixed_is_always_base() -> None:
    retry = RetrySettings(backoff=Backoff.FIXED, base=5.0, max=60.0, jitter=False)
    assert [backoff_delay(retry, n) for n in (1, 2, 10)] == [5.0, 5.0, 5.0]


def test_exponential_doubles_from_base_after_each_try() -> None:
    assert [backoff_delay(EXPONENTIAL, n) for n in range(1, 7)] == [1, 2, 4, 8, 16, 32]


def test_exponential_is_capped_at_max() -> None:
    assert backoff_delay(EXPONENTIAL, 7) == 60.0
    assert backoff_delay(EXPONENTIAL, 100) == 60.0


def test_huge_try_numbers_do_not_overflow() -> None:
    assert backoff_delay(EXPONENTIAL, 10**9) == 60.0
    big_base = RetrySettings(base=1000.0, max=3600.0, jitter=False)
    assert backoff_delay(big_base, 2000) == 3600.0


def test_jitter_keeps_the_delay_between_half_and_all_of_it() -> None:
    retry = RetrySettings(backoff=Backoff.EXPONENTIAL, base=1.0, max=60.0, jitter=True)
    assert backoff_delay(retry, 4, random=lambda: 0.0) == 4.0
    assert backoff_delay(retry, 4, random=lambda: 0.5) == 6.0
    assert backoff_delay(retry, 4, random=lambda: 0.999999) == pytest.approx(8.0, abs=1e-5)
    assert backoff_delay(retry, 4, random=lambda: 0.999999) < 8.0


def test_jitter_applies_after_the_cap() -> None:
    retry = RetrySettings(backoff=Backoff.EXPONENTIAL, base=1.0, max=10.0, jitter=True)
    assert backoff_delay(retry, 50, random=lambda: 0.0) == 5.0


def test_default_random_source_stays_in_range() -> None:
    retry = RetrySettings(backoff=Backoff.FIXED, base=2.0, max=2.0, jitter=True)
    assert 1.0 <= backoff_delay(retry, 1) <= 2.0


def test_try_number_is_one_based() -> None:
    with pytest.raises(ValueError, match="try_number is 1-based, got 0"):
        backoff_delay(EXPONENTIAL, 0)
