"""The LLM example (examples/llm) as a user runs it: the fake provider, the real daemon with its
embedded Redis, and a burst of jobs. Under [limits] the provider refuses nothing; the same burst
without limits is refused, which shows that the check can fail."""

from __future__ import annotations

from examples.llm.demo import HERE, run


def test_the_llm_example_gets_no_429_under_its_limits() -> None:
    result = run(HERE / "jobs.toml", 40)
    assert result["served"] == 40
    assert result["refused"] == 0


def test_without_limits_the_same_burst_is_refused() -> None:
    result = run(HERE / "unlimited.toml", 40)
    assert result["served"] == 40
    assert result["refused"] > 0
