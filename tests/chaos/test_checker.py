"""The checker can fail: hand-made bad ledgers and states, each breaking one invariant, are caught
(a checker that always passes would make every chaos scenario worthless)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.support.checker import Entry, Expect, QueueState, RedisState, check

PREFIX = "t"
HOST = "host"


def token(pid: int, nonce: int = 1) -> str:
    return f"{HOST}:{pid}:abcd1234:{nonce}"


def succeeded(pid: int, try_number: int = 1, lost: int = 0) -> dict[str, str]:
    return {
        "status": "succeeded",
        "result": json.dumps(f"{pid}|{try_number}"),
        "token": token(pid),
        "tries": str(try_number),
        "lost": str(lost),
    }


def good() -> tuple[list[Entry], RedisState, Expect]:
    """Two jobs, each run once by pid 100."""
    entries = [
        Entry("start", "a", 1, 100, 1.0),
        Entry("end", "a", 1, 100, 1.5),
        Entry("start", "b", 1, 100, 1.1),
        Entry("end", "b", 1, 100, 1.6),
    ]
    state = RedisState(
        PREFIX,
        queues={"default": QueueState()},
        jobs={"a": succeeded(100), "b": succeeded(100)},
        ttls={f"{PREFIX}:{{default}}:job:a": 3600, f"{PREFIX}:{{default}}:job:b": 3600,
              f"{PREFIX}:{{default}}:seq": -1},
    )  # fmt: skip
    return entries, state, Expect(acknowledged={"a", "b"})


def test_a_good_run_passes() -> None:
    assert check(*good()) == []


def test_a_killed_worker_explains_one_rerun_and_one_lost() -> None:
    entries, state, expect = good()
    entries = [
        *entries,
        Entry("start", "c", 1, 100, 2.0),  # killed at 2.2 before its end
        Entry("start", "c", 2, 200, 3.5),
        Entry("end", "c", 2, 200, 3.6),
    ]
    state.jobs["c"] = succeeded(200, 2, lost=1)
    state.ttls[f"{PREFIX}:{{default}}:job:c"] = 3600
    expect = replace(expect, acknowledged={"a", "b", "c"}, killed={100}, stopped={100: 2.2})
    assert check(entries, state, expect) == []


def violations(entries: list[Entry], state: RedisState, expect: Expect, code: str) -> list[str]:
    found = check(entries, state, expect)
    assert found, "the checker passed a bad ledger"
    assert any(line.startswith(code) for line in found), found
    return found


def test_a_lost_job_fails_i1() -> None:
    entries, state, expect = good()
    expect = replace(expect, acknowledged={"a", "b", "never-ran"})
    (line,) = violations(entries, state, expect, "I1")
    assert "never-ran" in line


def test_a_job_that_never_ended_fails_i1() -> None:
    entries, state, expect = good()
    entries = [e for e in entries if not (e.job_id == "b" and e.event == "end")]
    violations(entries, state, expect, "I1")


def test_a_duplicate_beyond_the_bound_fails_i2() -> None:
    entries, state, expect = good()
    entries = [*entries, Entry("start", "a", 1, 300, 5.0), Entry("end", "a", 1, 300, 5.1)]
    found = violations(entries, state, expect, "I2")
    assert any("a: started 2 times, bound 1" in line for line in found), found


def test_a_rerun_after_a_kill_of_another_process_is_not_explained() -> None:
    entries, state, expect = good()
    entries = [*entries, Entry("start", "a", 2, 300, 5.0)]
    violations(entries, state, replace(expect, killed={999}), "I2")


def test_overlapping_owners_fail_i3() -> None:
    entries, state, expect = good()
    entries = [
        Entry("start", "a", 1, 100, 1.0),
        Entry("start", "a", 2, 200, 1.2),  # while pid 100 still runs it
        Entry("end", "a", 1, 100, 1.5),
        Entry("end", "a", 2, 200, 1.7),
        *entries[2:],
    ]
    state.jobs["a"] = succeeded(200, 2)
    found = violations(entries, state, replace(expect, extra_starts=1), "I3")
    assert not any(line.startswith("I2") for line in found), found
    # allowed where the scenario allows a zombie, as long as the zombie's result was not stored
    assert check(entries, state, replace(expect, zombies={"a"})) == []


def test_a_zombie_result_stored_fails_i5() -> None:
    entries, state, expect = good()
    entries = [
        Entry("start", "a", 1, 100, 1.0),
        Entry("start", "a", 2, 200, 1.2),
        Entry("end", "a", 1, 100, 1.5),
        Entry("end", "a", 2, 200, 1.7),
        *entries[2:],
    ]
    state.jobs["a"] = {**succeeded(200, 2), "result": json.dumps("100|1")}  # the zombie's
    violations(entries, state, replace(expect, zombies={"a"}), "I5")


def test_a_result_stored_under_a_run_that_never_ended_fails_i5() -> None:
    entries, state, expect = good()
    state.jobs["a"] = succeeded(555)
    violations(entries, state, expect, "I5")


@pytest.mark.parametrize("kind", ["queued", "scheduled", "running"])
def test_a_stuck_job_fails_i4(kind: str) -> None:
    entries, state, expect = good()
    setattr(state.queues["default"], kind, {"zz"})
    state.jobs["zz"] = {"status": kind}
    found = violations(entries, state, expect, "I4")
    assert any(f"still {kind}" in line for line in found), found


def test_a_job_still_owned_fails_i4() -> None:
    entries, state, expect = good()
    state.queues["default"].owned["w1"] = {"a"}
    violations(entries, state, expect, "I4")


def test_an_unexpected_dead_letter_fails_i4() -> None:
    entries, state, expect = good()
    state.queues["default"].dead = {"b"}
    violations(entries, state, expect, "I4")


def test_wrong_lost_count_fails_i6() -> None:
    entries, state, expect = good()
    state.jobs["a"] = succeeded(100, lost=1)
    violations(entries, state, expect, "I6")


def test_metrics_that_disagree_fail_i6() -> None:
    entries, state, expect = good()
    violations(entries, state, replace(expect, succeeded_metric=3), "I6")


def test_a_daemon_that_did_not_exit_0_fails_i7() -> None:
    entries, state, expect = good()
    violations(entries, state, replace(expect, exits={"w1": 0, "w2": 1}), "I7")


def test_a_leaked_key_fails_i8() -> None:
    entries, state, expect = good()
    state.ttls[f"{PREFIX}:{{default}}:job:a"] = -1  # a finished job kept for ever
    found = violations(entries, state, expect, "I8")
    assert any("job:a: no TTL" in line for line in found), found


def test_a_heartbeat_left_after_a_clean_exit_fails() -> None:
    entries, state, expect = good()
    state.queues["default"].workers = {"w1"}
    state.ttls[f"{PREFIX}:{{default}}:claim:w1"] = 1500
    found = check(entries, state, expect)
    assert any(line.startswith("I4") and "heartbeats" in line for line in found), found
    assert any(line.startswith("I8") and "claim:w1" in line for line in found), found


def test_a_stop_marker_left_after_a_clean_exit_fails_i8() -> None:
    entries, state, expect = good()
    state.ttls[f"{PREFIX}:{{default}}:stop:w1"] = 1500
    found = violations(entries, state, expect, "I8")
    assert any("stop:w1: left by a worker that exited cleanly" in line for line in found), found
