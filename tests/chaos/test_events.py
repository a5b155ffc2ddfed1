"""Job events under faults (docs/events.md): a worker killed with SIGKILL in the middle of a job's
stream, and a worker drained (SIGTERM) in the middle of one. The next try's events follow in the
same stream after a "retrying" event that says why, and a reader that follows the whole time
sees every event once, in order, up to the end."""

from __future__ import annotations

import itertools
from typing import Any

from jobd.client import SyncClient
from jobd.events import JobEvent
from tests.chaos.conftest import Chaos, until

TOKENS = 20
FUNCTIONS = {"stream_tokens": {"path": "tests.jobs_for_tests:stream_tokens"}}


def follow_all(chaos: Chaos, job_id: str, after: str | None = None) -> list[JobEvent]:
    with SyncClient(chaos.url, key_prefix=chaos.prefix, socket_timeout=10) as jobs:
        return list(jobs.job(job_id).events(after=after))


def enqueue_stream(chaos: Chaos, gate: str) -> str:
    with SyncClient(chaos.url, key_prefix=chaos.prefix) as jobs:
        return jobs.enqueue("stream_tokens", TOKENS, gate=gate).id


def streamed(chaos: Chaos, job_id: str) -> int:
    with chaos.client() as connection:
        return int(connection.xlen(f"{chaos.prefix}:{{default}}:events:{job_id}"))


def check_stream(events: list[JobEvent], why: str) -> list[dict[str, Any]]:
    """The two tries as the stream tells them; returns the retrying event's data."""
    names = [event.event for event in events]
    assert names[:2] == ["started", "token"], names
    assert "retrying" in names, names
    retry_at = names.index("retrying")
    assert events[retry_at].data["error"] == why
    assert names[retry_at + 1] == "started" and names[-1] == "succeeded", names
    second = [e.data["i"] for e in events[retry_at:] if e.event == "token"]
    assert second == list(range(TOKENS))  # the next try's whole output, after the notice
    ids = [event.id for event in events]
    assert ids == sorted(set(ids))  # in order, none twice
    return [events[retry_at].data]


def test_a_worker_killed_mid_stream_the_next_try_follows_in_the_same_stream(
    chaos: Chaos,
) -> None:
    chaos.start_redis()
    config = chaos.config(functions=FUNCTIONS)
    a = chaos.daemon(config, name="a")
    gate = f"{chaos.prefix}:gate"
    job_id = enqueue_stream(chaos, gate)
    until(lambda: streamed(chaos, job_id) >= 2, "the first try's first token")
    with SyncClient(chaos.url, key_prefix=chaos.prefix) as jobs:  # read while it runs
        first = list(itertools.islice(jobs.job(job_id).events(), 2))
    chaos.kill(a)
    chaos.daemon(config, name="b")  # reaps a's job once its lease is over, runs try 2
    rest = follow_all(chaos, job_id, after=first[-1].id)
    chaos.stop_all()
    (retrying,) = check_stream(first + rest, "WorkerLost")
    assert retrying["try"] == 1
    assert [event.id for event in follow_all(chaos, job_id)] == [e.id for e in first + rest]


def test_a_drained_worker_hands_the_stream_to_the_next_try(chaos: Chaos) -> None:
    chaos.start_redis()
    config = chaos.config(worker={"drain_timeout": "0.2s"}, functions=FUNCTIONS)
    a = chaos.daemon(config, name="a")
    gate = f"{chaos.prefix}:gate"
    job_id = enqueue_stream(chaos, gate)
    until(lambda: streamed(chaos, job_id) >= 2, "the first try's first token")
    a.terminate()
    assert a.wait_exit() == 0
    chaos.daemon(config, name="b")
    chaos.ledger_server.client().rpush(
        gate, "go"
    )  # a drained try is not charged: the new one waits again
    events = follow_all(chaos, job_id)
    chaos.stop_all()
    (retrying,) = check_stream(events, "WorkerStopped")
    assert retrying["delay"] == 0
