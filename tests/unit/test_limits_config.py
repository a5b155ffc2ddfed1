"""[limits] in jobs.toml: each mistake reported with its key path, the warning for an unused limit,
the definitions the worker hands to claim.lua, and a round trip through `config show`."""

from __future__ import annotations

import json

import pytest

from jobd.config.loader import dump, loads, warnings_for
from jobd.config.settings import Rate
from jobd.errors import ConfigError
from jobd.worker.limits import limit_specs, pause_for

FUNCTION = '[functions.chat]\npath = "json:dumps"\nlimits = ["openai"]\n'


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        loads(text, source="jobs.toml", environ={})
    return list(caught.value.problems)


def test_a_full_limit_loads() -> None:
    settings = loads(
        '[limits.openai]\nrate = "500/m"\ncost = "150000/m"\nconcurrency = 64\n'
        'max_throttled = "30m"\n' + FUNCTION,
        environ={},
    )
    limit = settings.limits["openai"]
    assert (limit.rate, limit.cost, limit.concurrency) == (
        Rate(500, 60.0), Rate(150000, 60.0), 64,
    )  # fmt: skip
    assert limit.max_throttled == 1800.0 and not limit.per_group
    assert settings.functions["chat"].limits == ("openai",)
    assert json.loads(limit_specs(settings)["default"]) == {
        "f": {"chat": ["openai"]},
        "l": {"openai": [500, 60000, 150000, 60000, 64, 0]},
    }
    assert loads(dump(settings), environ={}) == settings


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('rate = "500/min"', "jobs.toml: limits.openai.rate: '500/min' is not a rate: write "
         '"N/s", "N/m" or "N/h" with N a whole number above 0, e.g. "500/m"'),
        ('cost = "0/s"', "jobs.toml: limits.openai.cost: '0/s' is not a rate"),
        ("concurrency = 0", "jobs.toml: limits.openai.concurrency: must be at least 1, got 0"),
        ("per_group = true", "jobs.toml: limits.openai: sets none of rate, cost and concurrency: "
         "give at least one"),
    ],
)  # fmt: skip
def test_each_mistake_names_its_key(table: str, message: str) -> None:
    found = problems(f"[limits.openai]\n{table}\n" + FUNCTION)
    assert any(problem.startswith(message) for problem in found), found


def test_limit_names_and_references() -> None:
    assert problems('[limits."a:b"]\nrate = "1/s"\n[functions.f]\npath = "json:dumps"\n') == [
        'jobs.toml: limits."a:b": limit name may only contain letters, digits and _ . : - (1 to '
        "100 characters), except ':'"
    ]
    assert problems('[limits.openai]\nrate = "1/s"\n[functions.chat]\npath = "json:dumps"\n'
                    'limits = ["opnai"]\n') == [
        "jobs.toml: functions.chat.limits[0]: unknown limit 'opnai', not in [limits]; did you "
        "mean 'openai'?"
    ]  # fmt: skip
    assert problems(
        '[limits.openai]\nrate = "1/s"\n'
        + FUNCTION
        + '[functions.batch]\npath = "json:dumps"\nqueue = "low"\nlimits = ["openai"]\n'
    ) == [
        "jobs.toml: limits.openai: is used by functions of 2 queues (chat on 'default', batch on "
        "'low'): a limit serves the functions of one queue; give each queue a limit of its own"
    ]


def test_an_unused_limit_is_a_warning() -> None:
    settings = loads('[limits.spare]\nconcurrency = 1\n[functions.f]\npath = "json:dumps"\n',
                     environ={})  # fmt: skip
    assert warnings_for(settings) == [
        "<string>: limits.spare: no function names this limit in its `limits`, so it holds back "
        "no job"
    ]


def test_throttled_pauses_the_named_limit_or_every_rate_and_cost() -> None:
    settings = loads(
        '[limits.openai]\nrate = "5/s"\nmax_throttled = "10m"\n'
        '[limits.slots]\nconcurrency = 2\n[limits.tokens]\ncost = "9/s"\nper_group = true\n'
        '[functions.chat]\npath = "json:dumps"\nlimits = ["openai", "slots", "tokens"]\n',
        environ={},
    )
    named = pause_for(settings, "chat", "openai", 12.5)
    assert (named.limits, named.seconds, named.max_throttled) == ((("openai", False),), 12.5, 600)
    every = pause_for(settings, "chat", None, None)
    assert every.limits == (("openai", False), ("tokens", True)) and every.seconds == 1.0
    assert pause_for(settings, "other", None, 3).limits == ()


def test_a_rate_may_be_per_any_whole_number_of_milliseconds() -> None:
    settings = loads('[limits.openai]\nrate = "20/1100ms"\ncost = "7/2s"\n' + FUNCTION, environ={})
    limit = settings.limits["openai"]
    assert (limit.rate, limit.cost) == (Rate(20, 1.1), Rate(7, 2.0))
    assert (str(limit.rate), str(limit.cost)) == ("20/1.1s", "7/2s")
    assert json.loads(limit_specs(settings)["default"])["l"]["openai"][:4] == [20, 1100, 7, 2000]
    assert problems('[limits.openai]\nrate = "5/0.5ms"\n' + FUNCTION)[0].startswith(
        "jobs.toml: limits.openai.rate: '5/0.5ms' is not a rate"
    )
