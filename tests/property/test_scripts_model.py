"""The Lua scripts against their reference model (tests/property/model.py), on a real Redis, at a
fixed seed: every step compared with the model and checked against the invariants. The whole
machine, then the same machine without the steps that touch no workflow, so that every example
builds graphs of jobs and resolves them under arbitrary interleavings."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis.stateful import rule, run_state_machine_as_test

from tests.property.model import ScriptsModel
from tests.support.redis_server import RedisServer

CI = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    stateful_step_count=50,
    suppress_health_check=[HealthCheck.too_slow],
)


class Model(ScriptsModel):
    replay = False


def test_scripts_behave_like_the_model(redis_server: RedisServer) -> None:
    Model.url = redis_server.url
    run_state_machine_as_test(Model, settings=CI)


class Flows(ScriptsModel):
    """Workflows: no heartbeats, cron ticks, result waiters or operator steps on plain jobs (an
    attribute that is not a rule hides the rule of that name), and `expire` as a step of its
    own (a kept record's TTL runs out)."""

    replay = False
    renew = housekeeping = operator = None  # type: ignore[assignment]

    @rule()
    def expire_one(self) -> None:
        self.expire()


FLOWS = settings(CI, max_examples=100)


def test_workflows_behave_like_the_model(redis_server: RedisServer) -> None:
    Flows.url = redis_server.url
    run_state_machine_as_test(Flows, settings=FLOWS)
