"""jobd.config: one test per kind of error message (exact text with file and key path), all problems
reported at once, environment expansion, the packaged template, dump, and a fuzz test."""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from jobd.config.loader import dump, load, loads, warnings_for
from jobd.config.settings import (
    Backoff,
    CronSettings,
    FunctionSettings,
    LimitSettings,
    MissedPolicy,
    RetrySettings,
    Settings,
)
from jobd.errors import ConfigError

FORMAT = 'expected a duration like "250ms", "30s", "5m", "1h", "2d" or a number of seconds'
NAME_RULE = "may only contain letters, digits and _ . : - (1 to 100 characters)"
CRON_FORMAT = (
    'expected 5 fields "minute hour day month weekday", a 6th for seconds, a 7th for the year'
)
FUNCTION = '[functions.send_email]\npath = "myapp.jobs:send_email"\n'


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    """The problems loading `text` as jobs.toml reports (failing the test if it loads)."""
    with pytest.raises(ConfigError) as caught:
        loads(text, source="jobs.toml", environ=environ or {})
    return list(caught.value.problems)


def ok(text: str, environ: dict[str, str] | None = None) -> Settings:
    return loads(text, source="jobs.toml", environ=environ or {})


# --- parsing -------------------------------------------------------------------------------------


def test_syntax_error_names_file_line_and_column() -> None:
    assert problems("[worker]\nconcurrency = 1 2\n") == [
        "jobs.toml: line 2, column 17: Expected newline or end of document after a statement"
    ]


def test_syntax_error_at_end_of_document_still_names_the_file() -> None:
    assert problems('[redis]\nurl = "redis://localhost') == [
        "jobs.toml: at end of document: Unterminated string"
    ]


def test_nesting_too_deep_for_tomllib_is_a_config_error() -> None:
    assert problems("a = " + "[" * 100_000 + "]" * 100_000) == [
        "jobs.toml: values are nested too deeply to parse"
    ]


def test_load_names_the_path_as_given(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text("[worker]\nconcurrency = 0\n")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert caught.value.problems == (f"{path}: worker.concurrency: must be at least 1, got 0",)


def test_load_sets_source_and_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBD_TEST_PREFIX", "fromenv")
    path = tmp_path / "jobs.toml"
    path.write_text('[redis]\nkey_prefix = "${JOBD_TEST_PREFIX}"\n')
    settings = load(str(path))
    assert settings.source == path
    assert settings.redis.key_prefix == "fromenv"


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load("no/such/jobs.toml", environ={})
    assert caught.value.problems == (
        "no/such/jobs.toml: cannot read the file (FileNotFoundError: No such file or directory)",
    )


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_bytes(b'key_prefix = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert caught.value.problems == (f"{path}: not UTF-8 text (invalid start byte at byte 14)",)


def test_empty_file_gives_the_defaults() -> None:
    assert ok("") == Settings(source=Path("jobs.toml"))
    assert loads("", environ={}).source is None


def test_config_error_lists_every_problem() -> None:
    error = ConfigError(["a: b: c", "d: e: f"])
    assert str(error) == "2 configuration errors:\n  - a: b: c\n  - d: e: f"


# --- types ---------------------------------------------------------------------------------------


def test_wrong_types_are_all_reported_at_once() -> None:
    text = '[worker]\nconcurrency = "ten"\nqueues = "default"\n[defaults]\ntimeout = true\n'
    assert problems(text) == [
        "jobs.toml: worker.queues: expected array of strings, got string 'default'",
        "jobs.toml: worker.concurrency: expected integer, got string 'ten'",
        f"jobs.toml: defaults.timeout: {FORMAT}, got boolean true",
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [("true", "boolean true"), ("2.5", "float 2.5"), ("[1]", "array"), ("{a = 1}", "table")],
)
def test_integer_fields_take_only_integers(value: str, shown: str) -> None:
    assert problems(f"[worker]\nmax_lost = {value}\n") == [
        f"jobs.toml: worker.max_lost: expected integer, got {shown}"
    ]


def test_boolean_and_string_fields() -> None:
    text = '[defaults.retry]\njitter = "yes"\n[hooks]\nstartup = 1979-05-27\n'
    assert problems(text) == [
        "jobs.toml: defaults.retry.jitter: expected boolean, got string 'yes'",
        "jobs.toml: hooks.startup: expected string, got date",
    ]


def test_choice_fields_list_the_choices() -> None:
    assert problems('[defaults]\nretry = { backoff = "linear" }\n') == [
        "jobs.toml: defaults.retry.backoff: expected one of 'fixed', 'exponential', "
        "got string 'linear'"
    ]
    assert problems('[redis]\nenqueue_durability = "disk"\n') == [
        "jobs.toml: redis.enqueue_durability: expected one of 'primary', 'replica', "
        "got string 'disk'"
    ]


def test_section_that_is_not_a_table() -> None:
    assert problems("worker = 5\nfunctions = []\n") == [
        "jobs.toml: worker: expected table, got integer 5",
        "jobs.toml: functions: expected table, got array",
    ]


# --- unknown keys --------------------------------------------------------------------------------


def test_unknown_key_with_did_you_mean() -> None:
    assert problems("[worker]\nconcurrancy = 10\n") == [
        "jobs.toml: worker.concurrancy: unknown key; did you mean 'concurrency'?"
    ]


def test_unknown_key_without_a_close_match_lists_the_keys() -> None:
    assert problems('[hooks]\nbefore = "m:f"\n') == [
        "jobs.toml: hooks.before: unknown key; expected one of startup, shutdown"
    ]


def test_key_in_the_wrong_table_names_where_it_belongs() -> None:
    assert problems('[http]\nlisten = "127.0.0.1:9100"\nqueues = ["a"]\n') == [
        "jobs.toml: http.queues: unknown key; did you mean 'worker.queues'? "
        "(it belongs in another table)"
    ]


def test_unknown_keys_at_every_level() -> None:
    text = (
        "wroker = 1\n"
        "[defaults]\nretry = { bsae = 1 }\n"
        '[functions.send_email]\npath = "m:f"\ntimeuot = 5\nname = "x"\n'
        '[[cron]]\nname = "a"\nfunction = "send_email"\nschedule = "* * * * *"\ntimezon = "UTC"\n'
    )
    assert problems(text) == [
        "jobs.toml: wroker: unknown key; did you mean 'worker'?",
        "jobs.toml: defaults.retry.bsae: unknown key; did you mean 'base'?",
        "jobs.toml: functions.send_email.timeuot: unknown key; did you mean 'timeout'?",
        "jobs.toml: functions.send_email.name: unknown key; expected one of path, queue, "
        "timeout, max_tries, keep_result, retry, limits",
        "jobs.toml: cron[0].timezon: unknown key; did you mean 'timezone'?",
    ]


# --- durations and ranges ------------------------------------------------------------------------


def test_duration_in_words_names_the_accepted_format() -> None:
    assert problems('[worker]\ndrain_timeout = "30 seconds"\n') == [
        f"jobs.toml: worker.drain_timeout: {FORMAT}, got '30 seconds'"
    ]


def test_negative_durations() -> None:
    assert problems('[defaults]\ntimeout = "-5s"\nkeep_result = -1\n') == [
        "jobs.toml: defaults.timeout: duration must not be negative, got '-5s'",
        "jobs.toml: defaults.keep_result: duration must not be negative, got -1",
    ]


def test_durations_accept_numbers_and_compound_strings() -> None:
    settings = ok('[worker]\ndrain_timeout = 90\nlease_timeout = "1m30s"\n')
    assert settings.worker.drain_timeout == 90.0
    assert settings.worker.lease_timeout == 90.0


@pytest.mark.parametrize(("value", "shown"), [("0", "0s"), ('"200ms"', "0.2s")])
def test_lease_timeout_too_short_says_why(value: str, shown: str) -> None:
    assert problems(f"[worker]\nlease_timeout = {value}\n") == [
        f"jobs.toml: worker.lease_timeout: must be at least 300ms, got {shown}: the lease is "
        "renewed every lease_timeout / 3, and renewals less than 100ms apart cannot keep up"
    ]


def test_integer_ranges() -> None:
    text = (
        "[worker]\nconcurrency = 0\nmax_lost = 0\nsync_threads = -1\nmax_payload_bytes = 0\n"
        "[defaults]\nmax_tries = 0\n"
    )
    assert problems(text) == [
        "jobs.toml: worker.concurrency: must be at least 1, got 0",
        "jobs.toml: worker.max_lost: must be at least 1, got 0",
        "jobs.toml: worker.sync_threads: must be at least 0, got -1",
        "jobs.toml: worker.max_payload_bytes: must be between 1 and 536870912 "
        "(512 MiB, the largest Redis value), got 0",
        "jobs.toml: defaults.max_tries: must be at least 1, got 0",
    ]


def test_zero_timeouts_are_refused_but_zero_keep_result_and_drain_are_allowed() -> None:
    assert problems('[defaults]\ntimeout = "0s"\n[redis]\nsocket_timeout = 0\n') == [
        "jobs.toml: redis.socket_timeout: must be longer than 0s, got 0s",
        "jobs.toml: defaults.timeout: must be longer than 0s, got 0s",
    ]
    settings = ok("[defaults]\nkeep_result = 0\n[worker]\ndrain_timeout = 0\n")
    assert settings.defaults.keep_result == 0.0
    assert settings.worker.drain_timeout == 0.0


def test_retry_base_and_max() -> None:
    assert problems('[defaults]\nretry = { base = 0, max = "1s" }\n') == [
        "jobs.toml: defaults.retry.base: must be longer than 0s, got 0s"
    ]
    assert problems('[defaults]\nretry = { base = "10s", max = "5s" }\n') == [
        "jobs.toml: defaults.retry.max: must not be shorter than base"
    ]


# --- names ---------------------------------------------------------------------------------------


def test_queue_names() -> None:
    text = '[worker]\nqueues = ["high", "{default}", "high", ""]\n'
    assert problems(text) == [
        f"jobs.toml: worker.queues[1]: queue name {NAME_RULE}, got '{{default}}'",
        "jobs.toml: worker.queues[2]: duplicate queue 'high'",
        f"jobs.toml: worker.queues[3]: queue name {NAME_RULE}, got ''",
    ]


def test_queue_list_must_not_be_empty_nor_hold_other_types() -> None:
    assert problems("[worker]\nqueues = []\n") == [
        "jobs.toml: worker.queues: must list at least one queue"
    ]
    assert problems('[worker]\nqueues = ["a", 1]\n') == [
        "jobs.toml: worker.queues[1]: expected string, got integer 1"
    ]


def test_long_queue_name() -> None:
    name = "q" * 101
    assert problems(f'[worker]\nqueues = ["{name}"]\n') == [
        f"jobs.toml: worker.queues[0]: queue name {NAME_RULE}, got '{'q' * 77}...'"
    ]


def test_key_prefix() -> None:
    assert problems('[redis]\nkey_prefix = ""\n') == [
        f"jobs.toml: redis.key_prefix: key prefix {NAME_RULE}, got ''"
    ]


def test_function_names_follow_the_same_rule() -> None:
    assert problems('[functions."send email"]\npath = "m:f"\n') == [
        f'jobs.toml: functions."send email": function name {NAME_RULE}'
    ]


# --- redis url -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "http://user:secret@host",
            "scheme must be redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://,"
            " got 'http://'",
        ),
        (
            "redis+sentinel://user:secret@s1,s2:26380",
            "name the Sentinel service after the hosts, like /mymaster",
        ),
        ("redis+sentinel://:secret@s1/main/x", "database must be a number, got 'x'"),
        (
            "redis+cluster://:secret@n1:7000,n2:http",
            "port must be a number from 1 to 65535, got 'http' in 'n2:http'",
        ),
        ("redis+cluster://:secret@n1/3", "a cluster URL takes no database number"),
        (
            "rediss+sentinel://:secret@s1/m?ssl_ca_certs=/nonexistent/ca.pem",
            "ssl_ca_certs= names '/nonexistent/ca.pem', which is not a file",
        ),
        ("redis://host/abc", "the database after the host must be a number, like /0, got '/abc'"),
        ("redis://[::1", "not a valid URL (Invalid IPv6 URL)"),
        ("unix://", "a unix:// URL needs the socket path, like unix:///run/redis.sock"),
    ],
)
def test_redis_url(url: str, problem: str) -> None:
    messages = problems(f'[redis]\nurl = "{url}"\n')
    assert messages == [f"jobs.toml: redis.url: {problem}"]
    assert "secret" not in messages[0]


@pytest.mark.parametrize("limit", ["0", "106"])
def test_a_pool_limit_the_worker_can_outgrow_is_refused(limit: str) -> None:
    """redis-py refuses calls beyond max_connections at once: a worker would take that for Redis
    being down."""
    messages = problems(
        f'[redis]\nurl = "redis+sentinel://:secret@s1/m?max_connections={limit}"\n'
        "[worker]\nconcurrency = 99\n"
    )
    assert messages == [
        f"jobs.toml: redis.url: max_connections={limit} is below what this worker may use at "
        "once: one connection per running job (worker.concurrency = 99) and 8 for its own "
        "calls; raise it to 107 or more, or remove it (the pool then grows as needed)"
    ]


@pytest.mark.parametrize("query", ["", "?max_connections=108"])  # concurrency 100 needs 108
def test_a_pool_limit_with_room_for_the_worker_is_accepted(query: str) -> None:
    settings = ok(f'[redis]\nurl = "redis://h/0{query}"\n[worker]\nconcurrency = 100\n')
    assert settings.redis.url.endswith(query)


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://:pw@redis.example:6380", "unix:///run/r.sock"]
)
def test_redis_url_accepted(url: str) -> None:
    assert ok(f'[redis]\nurl = "{url}"\n').redis.url == url


def test_redis_password_never_reaches_a_repr() -> None:
    settings = ok('[redis]\nurl = "redis://jobd:hunter2@redis:6379/0?password=hunter3"\n')
    assert settings.redis.redacted_url() == "redis://jobd:***@redis:6379/0?password=***"
    assert "hunter" not in repr(settings)
    assert "hunter" not in dump(settings)


# --- environment ---------------------------------------------------------------------------------


def test_missing_environment_variable() -> None:
    assert problems('[redis]\nurl = "${REDIS_URL}"\n') == [
        "jobs.toml: redis.url: environment variable REDIS_URL is not set"
    ]


def test_environment_variable_and_default() -> None:
    text = '[redis]\nurl = "${REDIS_URL:-redis://localhost:6379/1}"\nkey_prefix = "${P}-x"\n'
    assert ok(text, {"P": "app"}).redis.url == "redis://localhost:6379/1"
    assert ok(text, {"P": "app"}).redis.key_prefix == "app-x"
    assert ok(text, {"P": "a", "REDIS_URL": "redis://r/2"}).redis.url == "redis://r/2"
    # As in the shell, ":-" also replaces an empty value.
    assert ok(text, {"P": "a", "REDIS_URL": ""}).redis.url == "redis://localhost:6379/1"


def test_escaped_reference_is_literal() -> None:
    text = FUNCTION + '[[cron]]\nname = "c"\nfunction = "send_email"\nschedule = "* * * * *"\n'
    settings = ok(text + 'args = ["$${HOME}", "${HOME}"]\n', {"HOME": "/root"})
    assert settings.cron[0].args == ("${HOME}", "/root")


def test_malformed_references() -> None:
    assert problems('[redis]\nkey_prefix = "${1X}"\n[hooks]\nstartup = "${HOOK"\n') == [
        "jobs.toml: redis.key_prefix: invalid environment reference '${1X}'; "
        "expected ${NAME} or ${NAME:-default}",
        "jobs.toml: hooks.startup: invalid environment reference '${HOOK'; "
        "expected ${NAME} or ${NAME:-default}",
    ]


def test_numbers_and_booleans_may_come_from_the_environment() -> None:
    text = '[worker]\nconcurrency = "${WORKERS:-10}"\n[defaults.retry]\njitter = "${JITTER}"\n'
    settings = ok(text, {"JITTER": "false"})
    assert settings.worker.concurrency == 10
    assert settings.defaults.retry.jitter is False


def test_values_of_variables_are_never_printed() -> None:
    text = (
        '[worker]\nconcurrency = "${SECRET}"\nqueues = ["${SECRET}"]\ndrain_timeout = "${SECRET}"\n'
        '[http]\nlisten = "${SECRET}"\n[redis]\nurl = "${SECRET}"\n'
    )
    messages = problems(text, {"SECRET": "s3cr3t value"})
    hidden = "string '${SECRET}' (expanded value not shown)"
    assert messages == [
        "jobs.toml: redis.url: scheme must be redis://, rediss://, unix://, redis+sentinel://"
        " or redis+cluster://, got '://'",
        f"jobs.toml: worker.queues[0]: queue name {NAME_RULE}, got {hidden}",
        f"jobs.toml: worker.concurrency: expected integer, got {hidden}",
        f"jobs.toml: worker.drain_timeout: {FORMAT}, got {hidden}",
        'jobs.toml: http.listen: expected "host:port" like "127.0.0.1:9100" or "[::1]:9100", '
        f"got {hidden}",
    ]
    assert not any("s3cr3t" in message for message in messages)


# --- http ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:9100", "127.0.0.1", 9100),
        ("[::1]:9100", "::1", 9100),
        ("[::]:0", "::", 0),
        ("localhost:65535", "localhost", 65535),
        ("0.0.0.0:80", "0.0.0.0", 80),
    ],
)
def test_listen(listen: str, host: str, port: int) -> None:
    http = ok(f'[http]\nlisten = "{listen}"\n').http
    assert (http.listen, http.host, http.port) == (listen, host, port)


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("9100", 'expected "host:port" like "127.0.0.1:9100" or "[::1]:9100", got \'9100\''),
        (
            "::1:9100",
            'expected "host:port" like "127.0.0.1:9100" or "[::1]:9100", got \'::1:9100\'',
        ),
        ("host:70000", "port must be between 0 and 65535, got 'host:70000'"),
        ("[nothost]:80", "expected an IPv6 address inside the brackets, got '[nothost]:80'"),
    ],
)
def test_bad_listen(listen: str, problem: str) -> None:
    assert problems(f'[http]\nlisten = "{listen}"\n') == [f"jobs.toml: http.listen: {problem}"]


def test_host_and_port_are_not_keys() -> None:
    assert problems("[http]\nport = 80\n") == [
        "jobs.toml: http.port: unknown key; expected one of listen, max_loop_lag"
    ]


# --- functions and hooks -------------------------------------------------------------------------


def test_functions_inherit_defaults_and_the_first_queue() -> None:
    text = (
        '[worker]\nqueues = ["high", "default"]\n'
        '[defaults]\ntimeout = "1m"\nmax_tries = 3\nkeep_result = "2h"\n'
        'retry = { backoff = "fixed", base = "2s", max = "1m", jitter = false }\n'
        '[functions.b]\npath = "app.jobs:b"\nqueue = "default"\ntimeout = "30s"\n'
        'retry = { base = "5s" }\n'
        '[functions.a]\npath = "app.jobs:a"\n'
    )
    functions = ok(text).functions
    assert list(functions) == ["b", "a"]  # file order
    assert functions["a"] == FunctionSettings(
        name="a",
        path="app.jobs:a",
        queue="high",
        timeout=60.0,
        max_tries=3,
        keep_result=7200.0,
        retry=RetrySettings(backoff=Backoff.FIXED, base=2.0, max=60.0, jitter=False),
    )
    assert functions["b"].queue == "default"
    assert functions["b"].timeout == 30.0
    assert functions["b"].retry == RetrySettings(
        backoff=Backoff.FIXED, base=5.0, max=60.0, jitter=False
    )


def test_function_retry_checks_base_against_the_inherited_max() -> None:
    text = '[defaults]\nretry = { max = "10s" }\n' + FUNCTION + 'retry = { base = "1m" }\n'
    assert problems(text) == [
        "jobs.toml: functions.send_email.retry.max: must not be shorter than base"
    ]


def test_function_problems() -> None:
    text = (
        "[functions.a]\n"
        '[functions.b]\npath = "app.jobs.b"\nqueue = "a b"\ntimeout = 0\nmax_tries = 0\n'
        '[functions]\nc = "app.jobs:c"\n'
    )
    assert problems(text) == [
        "jobs.toml: functions.a: missing required key 'path'",
        'jobs.toml: functions.b.path: expected "module:attribute" like "myapp.jobs:send_email", '
        "got 'app.jobs.b'",
        f"jobs.toml: functions.b.queue: queue name {NAME_RULE}, got 'a b'",
        "jobs.toml: functions.b.timeout: must be longer than 0s, got 0s",
        "jobs.toml: functions.b.max_tries: must be at least 1, got 0",
        "jobs.toml: functions.c: expected table, got string 'app.jobs:c'",
    ]


def test_function_for() -> None:
    settings = ok(FUNCTION)
    assert settings.function_for("send_email") is settings.functions["send_email"]
    assert settings.function_for("nope") is None


def test_hooks() -> None:
    settings = ok('[hooks]\nstartup = "app.hooks:start"\n')
    assert (settings.hooks.startup, settings.hooks.shutdown) == ("app.hooks:start", None)
    assert problems('[hooks]\nshutdown = "app.hooks:"\n') == [
        'jobs.toml: hooks.shutdown: expected "module:attribute" like "myapp.jobs:send_email", '
        "got 'app.hooks:'"
    ]


# --- cron ----------------------------------------------------------------------------------------


def cron(**keys: str) -> str:
    entry = {"name": '"nightly"', "function": '"send_email"', "schedule": '"0 3 * * *"'} | keys
    return FUNCTION + "[[cron]]\n" + "".join(f"{key} = {value}\n" for key, value in entry.items())


def test_cron_entry_with_defaults() -> None:
    assert ok(cron()).cron == (
        CronSettings(name="nightly", function="send_email", schedule="0 3 * * *"),
    )


def test_cron_entry_with_every_key() -> None:
    text = cron(
        timezone='"Europe/Berlin"',
        args='[1, "two", [3]]',
        kwargs="{ to = { a = 1 } }",
        queue='"low"',
        priority="5",
        enabled="false",
        missed='"run-once"',
    )
    entry = ok(text).cron[0]
    assert entry.timezone == "Europe/Berlin"
    assert entry.args == (1, "two", [3])
    assert dict(entry.kwargs) == {"to": {"a": 1}}
    assert (entry.queue, entry.priority, entry.enabled) == ("low", 5, False)
    assert entry.missed is MissedPolicy.RUN_ONCE
    with pytest.raises(TypeError):
        entry.kwargs["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize("schedule", ["*/5 * * * *", "0 3 * * mon-fri", "0 3 * * * 30", "@daily"])
def test_cron_schedules_croniter_accepts(schedule: str) -> None:
    assert ok(cron(schedule=f'"{schedule}"')).cron[0].schedule == schedule


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("61 * * * *", " (out of range)"),
        (
            "every day",
            " (Exactly 5, 6 or 7 columns has to be specified for iterator expression)",
        ),
        ("0 0 31 2 *", " (Day(s) [31] can never occur in month(s) [2])"),
        ("H 3 * * *", " (hashed H fields are not supported)"),
    ],
)
def test_bad_cron_schedule(schedule: str, reason: str) -> None:
    assert problems(cron(schedule=f'"{schedule}"')) == [
        f"jobs.toml: cron[0].schedule: invalid cron expression '{schedule}'{reason}; {CRON_FORMAT}"
    ]


def test_unknown_time_zone() -> None:
    text = cron() + '[[cron]]\nname = "b"\nfunction = "send_email"\nschedule = "* * * * *"\n'
    assert problems(text + 'timezone = "Mars/Base"\n') == [
        "jobs.toml: cron[1].timezone: unknown time zone 'Mars/Base'"
    ]


def test_cron_naming_an_unknown_function() -> None:
    assert problems(cron(function='"send_emial"')) == [
        "jobs.toml: cron[0].function: unknown function 'send_emial', not in [functions]; "
        "did you mean 'send_email'?"
    ]


def test_duplicate_cron_names() -> None:
    second = '[[cron]]\nname = "nightly"\nfunction = "send_email"\nschedule = "* * * * *"\n'
    assert problems(cron() + second) == [
        "jobs.toml: cron[1].name: duplicate cron name 'nightly' (also cron[0])"
    ]


def test_cron_missing_keys_and_bad_values() -> None:
    text = (
        FUNCTION
        + '[[cron]]\nname = "a"\n'
        + '[[cron]]\nname = "b"\nfunction = "send_email"\nschedule = "* * * * *"\n'
        + 'missed = "later"\nargs = [1979-05-27T07:32:00]\nkwargs = { x = nan }\nqueue = "{q}"\n'
    )
    assert problems(text) == [
        "jobs.toml: cron[0]: missing required key 'function'",
        "jobs.toml: cron[0]: missing required key 'schedule'",
        "jobs.toml: cron[1].args[0]: expected a JSON value (string, integer, finite float, "
        "boolean, array or table), got datetime",
        "jobs.toml: cron[1].kwargs.x: expected a JSON value (string, integer, finite float, "
        "boolean, array or table), got float nan",
        f"jobs.toml: cron[1].queue: queue name {NAME_RULE}, got '{{q}}'",
        "jobs.toml: cron[1].missed: expected one of 'skip', 'run-once', got string 'later'",
    ]


def test_cron_must_be_an_array_of_tables() -> None:
    assert problems("cron = { name = 1 }\n") == [
        "jobs.toml: cron: expected array of tables ([[cron]]), got table"
    ]
    assert problems("cron = [1]\n") == ["jobs.toml: cron[0]: expected table, got integer 1"]


# --- everything at once --------------------------------------------------------------------------


def test_all_problems_of_a_file_are_reported_together() -> None:
    text = (
        '[redis]\nurl = "${REDIS_URL}"\n'
        "[worker]\nconcurrancy = 10\nlease_timeout = 0.1\n"
        '[functions.send_email]\npath = "myapp.jobs.send_email"\n'
        '[[cron]]\nname = "x"\nfunction = "nope"\nschedule = "* * *"\ntimezone = "Mars/Base"\n'
    )
    messages = problems(text)
    assert [message.split(": ")[1] for message in messages] == [
        "redis.url",
        "worker.concurrancy",
        "worker.lease_timeout",
        "functions.send_email.path",
        "cron[0].schedule",
        "cron[0].timezone",
        "cron[0].function",
    ]
    assert all(message.startswith("jobs.toml: ") for message in messages)


# --- warnings ------------------------------------------------------------------------------------


def test_warnings() -> None:
    text = (
        '[worker]\nqueues = ["default"]\ndrain_timeout = "30m"\n'
        + FUNCTION
        + 'queue = "emails"\n'
        + '[[cron]]\nname = "c"\nfunction = "send_email"\nschedule = "* * * * *"\nqueue = "low"\n'
    )
    assert warnings_for(ok(text)) == [
        "jobs.toml: functions.send_email.queue: queue 'emails' is not in worker.queues; "
        "this worker will not run 'send_email' jobs, another worker must",
        "jobs.toml: cron[0].queue: queue 'low' is not in worker.queues; "
        "another worker must consume it",
        "jobs.toml: worker.drain_timeout: 30m is longer than 25m; systemd's TimeoutStopSec and "
        "Kubernetes' terminationGracePeriodSeconds must be longer still, or the drain is killed",
    ]


def test_sentinel_without_replica_durability_is_warned_about() -> None:
    sentinel = '[redis]\nurl = "redis+sentinel://s1,s2/main"\n' + FUNCTION
    (note,) = warnings_for(ok(sentinel))
    assert note.startswith('jobs.toml: redis.enqueue_durability: "primary" with Sentinel:')
    durable = sentinel.replace('/main"\n', '/main"\nenqueue_durability = "replica"\n')
    assert warnings_for(ok(durable)) == []


def test_warning_without_functions_and_none_for_a_plain_file() -> None:
    assert warnings_for(loads("", environ={})) == [
        "<string>: functions: no job functions defined; a worker can run no job"
    ]
    assert warnings_for(ok(FUNCTION)) == []


# --- the template and dump -----------------------------------------------------------------------


def template_text() -> str:
    return resources.files("jobd.config").joinpath("templates/jobs.toml").read_text()


def test_template_loads_to_the_defaults() -> None:
    settings = loads(template_text(), environ={})
    example = FunctionSettings(name="send_email", path="myapp.jobs:send_email")
    assert dict(settings.functions) == {"send_email": example}
    assert dataclasses.replace(settings, functions=Settings().functions) == Settings()


def test_template_mentions_every_key() -> None:
    text = template_text()
    sections: list[Any] = [
        Settings().redis,
        Settings().worker,
        Settings().http,
        Settings().defaults,
        Settings().hooks,
        RetrySettings(),
        FunctionSettings(name="x", path="m:f"),
        CronSettings(name="x", function="f", schedule="* * * * *"),
        LimitSettings(name="x"),
    ]
    for section in sections:
        for field in dataclasses.fields(section):
            if not field.metadata.get("derived"):
                assert f"{field.name} =" in text, f"{type(section).__name__}.{field.name}"


def test_dump_round_trips_and_writes_durations_as_strings() -> None:
    text = (
        '[redis]\nurl = "redis://localhost:6379/3"\n[worker]\nqueues = ["a", "b"]\n'
        '[http]\nlisten = "[::1]:0"\n[defaults]\ntimeout = 90\n'
        '[hooks]\nstartup = "app:start"\n'
        + FUNCTION
        + 'retry = { max = "2h" }\n'
        + '[[cron]]\nname = "c"\nfunction = "send_email"\nschedule = "0 3 * * *"\n'
        + 'args = ["$${literal}", 1.5]\nkwargs = { a = [1, { b = 2 }] }\n'
    )
    settings = ok(text)
    written = dump(settings)
    assert 'timeout = "90s"' in written
    assert 'keep_result = "1h"' in written
    assert "\nhost =" not in written
    assert "\nport =" not in written
    assert loads(written, environ={}) == dataclasses.replace(settings, source=None)


# --- fuzz ----------------------------------------------------------------------------------------
# Documents are built from the settings dataclasses: mostly their own keys with plausible values
# (so that many load and the round trip through dump is checked), mixed with wrong types and keys.

SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["30s", "-5s", "${HOME}", "${MISSING}", "${X:-5}", "$${", "${", "m:f"]),
    st.datetimes(),
    st.dates(),
    st.times(),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
JSON = st.recursive(
    st.text(max_size=5) | st.booleans() | st.integers() | st.floats(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
# Each list ends with one bad value, drawn now and then.
STRINGS_BY_KEY: dict[str, list[str]] = {
    "url": ["redis://localhost:6379/0", "rediss://u:p@h:1/2", "unix:///s", "embedded", "http://x"],
    "data_dir": [".jobd", "state/redis", "/var/lib/jobd", "${X:-.jobd}", " "],
    "key_prefix": ["jobd", "app:jobs", "${X:-jobd}", ""],
    "listen": ["127.0.0.1:9100", "[::1]:0", "${X:-localhost:80}", "nohost"],
    "startup": ["app.hooks:start", "${X:-app:start}", "app.hooks"],
    "shutdown": ["app.hooks:stop", "app:Hooks.stop", "app.hooks"],
    "path": ["app.jobs:send_email", "app:Mailer.send", "app.jobs"],
    "queue": ["default", "high", "${X:-default}", "a b"],
    "name": ["nightly", "hourly", "every-minute", "a b"],
    "function": ["send_email", "send_email", "cleanup"],
    "schedule": ["0 3 * * *", "*/5 * * * * 30", "@hourly", "0 0 31 2 *"],
    "timezone": ["UTC", "Europe/Berlin", "America/New_York", "Mars/Base"],
    "signing_key": ["", "${X:-" + "k" * 32 + "}", "${X:-short}", "a literal key in the file!!!!!!"],
}
DURATIONS = st.sampled_from(["30s", "250ms", "1h30m", "2d", 5, 0.5, "${X:-2s}", "1h", "-1s"])


def good_values(cls: Any, name: str) -> st.SearchStrategy[Any]:
    """Plausible values for one field, from its annotation (and its name, for strings)."""
    hint = typing.get_type_hints(cls)[name]
    if name == "encryption_keys":
        keys = ["${X:-}", "${X:-" + "k" * 43 + "}", "${HOME}"]  # the last: not a key
        return st.lists(st.sampled_from(keys[:-1]) | st.sampled_from(keys), max_size=2)
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(min_value=1, max_value=200) | st.just(0)
    if hint is float:
        return DURATIONS
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        return st.sampled_from([member.value for member in hint])
    if hint == tuple[str, ...]:
        return st.lists(st.sampled_from(["default", "high", "a.b"]), min_size=1, max_size=3)
    if hint == tuple[Any, ...]:
        return st.lists(JSON, max_size=3)
    if hint == Mapping[str, Any]:
        return st.dictionaries(st.text(max_size=5), JSON, max_size=3)
    if dataclasses.is_dataclass(hint):
        return tables(hint, dirty=False)
    choices = STRINGS_BY_KEY[name]
    return st.sampled_from(choices[:-1]) | st.sampled_from(choices)


def tables(cls: Any, *, dirty: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A table for dataclass `cls` with its own keys; `dirty` adds wrong types and unknown keys."""
    fields = [field for field in dataclasses.fields(cls) if not field.metadata.get("derived")]
    values = {
        field.name: st.one_of(good_values(cls, field.name), VALUES)
        if dirty
        else good_values(cls, field.name)
        for field in fields
    }
    required = [
        field.name
        for field in fields
        if not dirty
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    ]
    own = st.fixed_dictionaries(
        {name: values[name] for name in required},
        optional={name: strategy for name, strategy in values.items() if name not in required},
    )
    if not dirty:
        return own
    typo = st.dictionaries(st.sampled_from(["concurrancy", "timeuot", "x"]), VALUES, max_size=1)
    return st.tuples(own, typo).map(lambda pair: pair[0] | pair[1])


def documents(*, dirty: bool) -> st.SearchStrategy[dict[str, Any]]:
    def section(name: str) -> st.SearchStrategy[Any]:
        table = tables(type(getattr(Settings(), name)), dirty=dirty)
        return st.one_of(table, VALUES) if dirty else table

    function_names = st.sampled_from(["send_email", "send_email", "report", "bad name"])
    return st.fixed_dictionaries(
        {},
        optional={
            **{name: section(name) for name in ("redis", "worker", "http", "defaults", "hooks")},
            "functions": st.dictionaries(
                function_names, tables(FunctionSettings, dirty=dirty), max_size=2
            ),
            "cron": st.lists(tables(CronSettings, dirty=dirty), max_size=2),
        },
    )


DOCUMENTS = st.one_of(
    documents(dirty=False),
    documents(dirty=False),
    documents(dirty=True),
    st.dictionaries(st.text(max_size=6), VALUES, max_size=4),
)


@settings(derandomize=True, max_examples=200, database=None, deadline=None)
@given(DOCUMENTS)
def test_any_toml_document_gives_settings_or_config_error(document: dict[str, Any]) -> None:
    text = tomli_w.dumps(document)
    try:
        settings = loads(text, source="jobs.toml", environ={"HOME": "/root", "X": ""})
    except ConfigError as error:
        assert error.problems
        assert all(problem.startswith("jobs.toml: ") for problem in error.problems)
        return
    assert isinstance(settings, Settings)
    redacted = dataclasses.replace(settings.redis, url=settings.redis.redacted_url())
    # secrets: dump leaves them out
    worker = dataclasses.replace(settings.worker, signing_key="", encryption_keys=())
    expected = dataclasses.replace(settings, source=None, redis=redacted, worker=worker)
    assert loads(dump(settings), environ={}) == expected


TOKENS = [*'[]{}=".,#\n :-$ab1', "[worker]", "[[cron]]", "concurrency", "queues", "'", '"""']


@settings(derandomize=True, max_examples=200, database=None, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=20).map("".join))
def test_any_text_gives_settings_or_config_error(text: str) -> None:
    try:
        assert isinstance(loads(text, environ={}), Settings)
    except ConfigError as error:
        assert error.problems


def test_max_loop_lag_must_be_positive() -> None:
    with pytest.raises(ConfigError) as error:
        loads('[http]\nmax_loop_lag = "0s"\n', source="jobs.toml")
    assert error.value.problems == ("jobs.toml: http.max_loop_lag: must be longer than 0s, got 0s",)
