"""jobd.worker.functions: import paths, the function registry and hooks, on a package in tmp_path."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobd.config.loader import loads
from jobd.config.settings import Settings
from jobd.errors import ImportPathError
from jobd.worker.functions import RegisteredFunction, build_registry, check, import_path, load_hooks

MODULES = {
    "__init__.py": "",
    "good.py": """
        TIMEOUT = 5

        async def send(address):
            return address

        def add(a, b):
            return a + b

        class AsyncCallable:
            async def __call__(self, x):
                return x

        async_callable = AsyncCallable()

        class Mailer:
            @staticmethod
            def send(address):
                return address

        async def stream():
            yield 1

        def numbers():
            yield 1

        async def startup(state):
            state["started"] = True

        def shutdown(state):
            pass

        def no_arguments():
            pass

        def two_arguments(state, other):
            pass
    """,
    "broken.py": """
        raise ImportError("boom")
    """,
    "needs_missing.py": """
        import jobd_test_not_installed_dependency
    """,
    "exits.py": """
        raise SystemExit(3)
    """,
}


@pytest.fixture(autouse=True)
def jobsapp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The package `jobsapp` on sys.path, forgotten again after the test."""
    package = tmp_path / "jobsapp"
    package.mkdir()
    for name, source in MODULES.items():
        (package / name).write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield
    for name in [name for name in sys.modules if name.split(".")[0] == "jobsapp"]:
        del sys.modules[name]


def settings_with(functions: dict[str, str], **hooks: str) -> Settings:
    text = "".join(f'[functions.{name}]\npath = "{path}"\n' for name, path in functions.items())
    text += "[hooks]\n" + "".join(f'{which} = "{path}"\n' for which, path in hooks.items())
    return loads(text, source="jobs.toml", environ={})


def import_error(path: str) -> str:
    with pytest.raises(ImportPathError) as caught:
        import_path(path, what="job function")
    return str(caught.value)


# --- import_path ---------------------------------------------------------------------------------


def test_imports_functions_and_nested_attributes() -> None:
    from jobsapp import good  # type: ignore[import-not-found]

    assert import_path("jobsapp.good:send", what="job function") is good.send
    assert import_path("jobsapp.good:Mailer.send", what="job function") is good.Mailer.send


def test_missing_module() -> None:
    assert import_error("jobsapp.nope:send") == (
        "cannot import module 'jobsapp.nope' (ModuleNotFoundError: No module named 'jobsapp.nope')"
    )


def test_missing_top_level_package() -> None:
    assert import_error("jobd_test_no_such_package.jobs:send") == (
        "cannot import module 'jobd_test_no_such_package.jobs' "
        "(ModuleNotFoundError: No module named 'jobd_test_no_such_package')"
    )


def test_module_raising_at_import() -> None:
    assert import_error("jobsapp.broken:send") == (
        "importing module 'jobsapp.broken' raised ImportError: boom"
    )


def test_module_whose_own_import_is_missing_is_not_reported_as_missing() -> None:
    assert import_error("jobsapp.needs_missing:send") == (
        "importing module 'jobsapp.needs_missing' raised ModuleNotFoundError: "
        "No module named 'jobd_test_not_installed_dependency'"
    )


def test_module_calling_exit_at_import() -> None:
    assert import_error("jobsapp.exits:send") == (
        "importing module 'jobsapp.exits' raised SystemExit: 3"
    )


def test_missing_attribute_with_did_you_mean() -> None:
    assert import_error("jobsapp.good:sendd") == (
        "cannot import 'jobsapp.good:sendd': module 'jobsapp.good' has no attribute 'sendd'; "
        "did you mean 'send'?"
    )


def test_missing_nested_attribute() -> None:
    assert import_error("jobsapp.good:Mailer.post") == (
        "cannot import 'jobsapp.good:Mailer.post': object 'jobsapp.good:Mailer' has no "
        "attribute 'post'"
    )


def test_not_callable() -> None:
    assert (
        import_error("jobsapp.good:TIMEOUT") == "'jobsapp.good:TIMEOUT' is not callable (it is int)"
    )


def test_async_generator() -> None:
    assert import_error("jobsapp.good:stream") == (
        "'jobsapp.good:stream' is an async generator; job functions must be `async def` "
        "returning a value or plain `def`"
    )


def test_generator() -> None:
    assert import_error("jobsapp.good:numbers") == (
        "'jobsapp.good:numbers' is a generator function; job functions must be `async def` "
        "returning a value or plain `def`"
    )


@pytest.mark.parametrize("path", ["jobsapp.good.send", "jobsapp.good:", ":send", "a-b:c"])
def test_malformed_path(path: str) -> None:
    assert import_error(path) == (
        f'{path!r} is not an import path; expected "module:attribute" like "myapp.jobs:send_email"'
    )


# --- build_registry ------------------------------------------------------------------------------


def test_registry_of_async_sync_and_callable_objects() -> None:
    settings = settings_with(
        {
            "send": "jobsapp.good:send",
            "add": "jobsapp.good:add",
            "call": "jobsapp.good:async_callable",
        }
    )
    functions, problems = build_registry(settings)
    assert problems == []
    assert list(functions) == ["send", "add", "call"]
    assert functions["send"].is_async is True
    assert functions["add"].is_async is False
    assert functions["call"].is_async is True
    assert functions["add"].settings is settings.functions["add"]
    assert functions["add"].func(2, 3) == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        functions["add"].is_async = True  # type: ignore[misc]
    assert isinstance(functions["add"], RegisteredFunction)


def test_registry_problems_name_file_and_key_path() -> None:
    settings = settings_with(
        {
            "send_email": "jobsapp.jobz:send_email",
            "ok": "jobsapp.good:send",
            "stream": "jobsapp.good:stream",
        }
    )
    functions, problems = build_registry(settings)
    assert list(functions) == ["ok"]
    assert problems == [
        "jobs.toml: functions.send_email.path: cannot import module 'jobsapp.jobz' "
        "(ModuleNotFoundError: No module named 'jobsapp.jobz')",
        "jobs.toml: functions.stream.path: 'jobsapp.good:stream' is an async generator; "
        "job functions must be `async def` returning a value or plain `def`",
    ]


def test_settings_loaded_from_a_string_are_named_so() -> None:
    settings = loads('[functions.x]\npath = "jobsapp.nope:x"\n', environ={})
    _, problems = build_registry(settings)
    assert problems[0].startswith("<string>: functions.x.path: cannot import module")


# --- hooks ---------------------------------------------------------------------------------------


def test_hooks() -> None:
    from jobsapp import good

    hooks, problems = load_hooks(
        settings_with({}, startup="jobsapp.good:startup", shutdown="jobsapp.good:shutdown")
    )
    assert problems == []
    assert hooks.startup is good.startup
    assert hooks.shutdown is good.shutdown


def test_no_hooks() -> None:
    hooks, problems = load_hooks(settings_with({}))
    assert (hooks.startup, hooks.shutdown, problems) == (None, None, [])


def test_hooks_with_wrong_signatures() -> None:
    settings = settings_with(
        {}, startup="jobsapp.good:no_arguments", shutdown="jobsapp.good:two_arguments"
    )
    hooks, problems = load_hooks(settings)
    assert (hooks.startup, hooks.shutdown) == (None, None)
    assert problems == [
        "jobs.toml: hooks.startup: 'jobsapp.good:no_arguments' must accept one argument "
        "(state: dict)",
        "jobs.toml: hooks.shutdown: 'jobsapp.good:two_arguments' must accept one argument "
        "(state: dict)",
    ]


def test_hook_that_cannot_be_imported() -> None:
    _, problems = load_hooks(settings_with({}, shutdown="jobsapp.broken:stop"))
    assert problems == [
        "jobs.toml: hooks.shutdown: importing module 'jobsapp.broken' raised ImportError: boom"
    ]


def test_hook_that_is_an_async_generator() -> None:
    _, problems = load_hooks(settings_with({}, startup="jobsapp.good:stream"))
    assert problems == [
        "jobs.toml: hooks.startup: 'jobsapp.good:stream' is an async generator; startup hooks "
        "must be `async def` returning a value or plain `def`"
    ]


# --- check ---------------------------------------------------------------------------------------


def test_check_lists_every_problem_of_functions_and_hooks() -> None:
    settings = settings_with(
        {"a": "jobsapp.nope:a", "b": "jobsapp.good:TIMEOUT", "c": "jobsapp.good:add"},
        startup="jobsapp.good:no_arguments",
    )
    assert check(settings) == [
        "jobs.toml: functions.a.path: cannot import module 'jobsapp.nope' "
        "(ModuleNotFoundError: No module named 'jobsapp.nope')",
        "jobs.toml: functions.b.path: 'jobsapp.good:TIMEOUT' is not callable (it is int)",
        "jobs.toml: hooks.startup: 'jobsapp.good:no_arguments' must accept one argument "
        "(state: dict)",
    ]
    assert check(settings_with({"c": "jobsapp.good:add"})) == []
