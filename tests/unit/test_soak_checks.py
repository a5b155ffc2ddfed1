"""The soak's feature checks (bench/soak/mix.py, bench/soak/features.py) fail on bad input: a
stream with a gap or out of order, a child that started before its parent ended, a second with
one start too many."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bench.soak.features import most_in_a_second, workflow_order
from bench.soak.mix import Stream, judge
from jobd.events import JobEvent
from tests.support.checker import Entry

NOW = datetime(2026, 12, 5, tzinfo=UTC)
TOKENS = 3


def stream(*events: tuple[str, Any]) -> list[JobEvent]:
    return [JobEvent(f"{i:012d}", name, data, NOW) for i, (name, data) in enumerate(events, 1)]


def judged(events: list[JobEvent], ended: str | None = "succeeded") -> Stream:
    result = Stream("e1", ended=ended)
    judge(result, events, TOKENS)
    return result


def one_try(tokens: list[int]) -> list[tuple[str, Any]]:
    return [
        ("started", {"try": 1}),
        *[("token", {"i": i}) for i in tokens],
        ("progress", {"fraction": 1.0, "message": None}),
        ("succeeded", {"try": 1}),
    ]


def test_a_complete_stream_passes() -> None:
    assert judged(stream(*one_try([0, 1, 2]))).problems == []


def test_a_missing_token_fails_the_stream() -> None:
    assert judged(stream(*one_try([0, 2]))).problems


def test_a_gap_explained_by_a_dropped_notice_passes() -> None:
    events = one_try([0, 2])
    events.insert(2, ("dropped", {"count": 1}))
    result = judged(stream(*events))
    assert result.problems == [] and result.dropped == 1


def test_ids_out_of_order_fail_the_stream() -> None:
    events = stream(*one_try([0, 1, 2]))
    events[1], events[2] = events[2], events[1]
    assert any("order" in problem for problem in judged(events).problems)


def test_only_the_last_try_must_be_complete() -> None:
    first = [("started", {"try": 1}), ("token", {"i": 0}), ("retrying", {"try": 1})]
    result = judged(stream(*first, *one_try([0, 1, 2])))
    assert result.problems == [] and result.tries == 2
    assert judged(stream(*one_try([0, 1, 2]), *first[:2]), ended=None).problems


def test_a_failed_job_fails_the_stream() -> None:
    assert judged(stream(*one_try([0, 1, 2])), ended="failed").problems


def entry(event: str, job_id: str, at: float) -> Entry:
    return Entry(event, job_id, 1, 1, at)


def test_a_child_started_before_its_parent_ended_is_reported() -> None:
    parents = {"b": ["a"]}
    in_order = [entry("start", "a", 1), entry("end", "a", 2), entry("start", "b", 3)]
    assert workflow_order(in_order, parents) == []
    early = [entry("start", "a", 1), entry("start", "b", 1.5), entry("end", "a", 2)]
    assert workflow_order(early, parents)


def test_a_child_whose_parent_never_ended_is_reported() -> None:
    assert workflow_order([entry("start", "a", 1), entry("start", "b", 2)], {"b": ["a"]})


def test_most_in_a_second_counts_any_window() -> None:
    assert most_in_a_second([0, 500, 999, 1000, 1999]) == 3
    assert most_in_a_second([0, 1000, 2000]) == 1
