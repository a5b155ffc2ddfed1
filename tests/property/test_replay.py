"""Replay safety of every Lua script (docs/reliability.md finding 3, §5.4): redis-py sends a command again
after a lost reply, so each script call, sent twice with the same arguments from any state the
model reaches, must leave Redis exactly as one call did (only heartbeat times and the queue's
activity clock may move) and answer as a replay."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.property.model import ScriptsModel
from tests.support.redis_server import RedisServer

CI = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=80,
    stateful_step_count=50,
    suppress_health_check=[HealthCheck.too_slow],
)


class Replayed(ScriptsModel):
    replay = True


def test_every_script_call_sent_twice_leaves_the_same_state(redis_server: RedisServer) -> None:
    Replayed.url = redis_server.url
    run_state_machine_as_test(Replayed, settings=CI)
