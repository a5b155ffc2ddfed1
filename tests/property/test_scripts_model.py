"""The Lua scripts against their reference model (tests/property/model.py), on a real Redis, at a
fixed seed: every step compared with the model and checked against the invariants."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

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
