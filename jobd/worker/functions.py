"""Import paths ("package.module:attribute") turned into the job functions and hooks a worker calls.

Problems are returned, not raised: `jobd check` lists them all; `jobd run` refuses to start on any.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobd.config.fields import closest, join_path
from jobd.config.settings import FunctionSettings, Settings
from jobd.errors import ImportPathError

STRING_SOURCE = "<string>"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredFunction:
    """A job function ready to call, with its settings."""

    settings: FunctionSettings
    func: Callable[..., Any]
    # True: await func(...) on the event loop; False: run it in the thread pool
    is_async: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Hooks:
    """The startup and shutdown hooks, each called with the worker's `state` dict; may be async."""

    startup: Callable[[dict[str, Any]], Any] | None = None
    shutdown: Callable[[dict[str, Any]], Any] | None = None


def import_path(path: str, *, what: str) -> Callable[..., Any]:
    """The callable that `path` ("pkg.mod:attr.sub") names.

    `what` ("job function", "startup hook") words the messages. Raises ImportPathError naming the
    path and any underlying exception's type and message.
    """
    module_name, separator, attribute_path = path.partition(":")
    parts = [*module_name.split("."), *attribute_path.split(".")]
    if not separator or not all(part.isidentifier() for part in parts):
        raise ImportPathError(
            f"{path!r} is not an import path; "
            'expected "module:attribute" like "myapp.jobs:send_email"'
        )
    target: Any = _import_module(module_name)
    resolved = module_name
    for attribute in attribute_path.split("."):
        target = _get_attribute(target, attribute, resolved, path)
        resolved = (
            f"{resolved}:{attribute}" if resolved == module_name else f"{resolved}.{attribute}"
        )
    if not callable(target):
        raise ImportPathError(f"{path!r} is not callable (it is {type(target).__name__})")
    if _is_generator(target, inspect.isasyncgenfunction):
        raise ImportPathError(
            f"{path!r} is an async generator; {what}s must be `async def` returning a value "
            "or plain `def`"
        )
    if _is_generator(target, inspect.isgeneratorfunction):
        raise ImportPathError(
            f"{path!r} is a generator function; {what}s must be `async def` returning a value "
            "or plain `def`"
        )
    return target  # type: ignore[no-any-return]


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        # Missing only if the module itself (or a parent package) is missing; a module that fails
        # to import one of *its* dependencies raised at import.
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            raise ImportPathError(
                f"cannot import module {name!r} (ModuleNotFoundError: {error})"
            ) from error
        raise ImportPathError(_raised_at_import(name, error)) from error
    except (Exception, SystemExit) as error:  # user code: anything may be raised at import
        raise ImportPathError(_raised_at_import(name, error)) from error


def _raised_at_import(name: str, error: BaseException) -> str:
    return f"importing module {name!r} raised {type(error).__name__}: {error}"


def _get_attribute(target: Any, attribute: str, resolved: str, path: str) -> Any:
    try:
        return getattr(target, attribute)
    except AttributeError:
        names = [name for name in dir(target) if not name.startswith("_")]
        close = closest(attribute, names)
        hint = f"; did you mean {close!r}?" if close else ""
        what = "module" if ":" not in resolved else "object"
        raise ImportPathError(
            f"cannot import {path!r}: {what} {resolved!r} has no attribute {attribute!r}{hint}"
        ) from None
    except Exception as error:  # a module __getattr__ or property that raises
        raise ImportPathError(
            f"cannot import {path!r}: getting {attribute!r} from {resolved!r} raised "
            f"{type(error).__name__}: {error}"
        ) from error


def _is_generator(target: Any, predicate: Callable[[Any], bool]) -> bool:
    """`predicate` on a function, or on the `__call__` of a callable instance."""
    if predicate(target):
        return True
    call = getattr(target, "__call__", None)  # noqa: B004 - the method itself is inspected
    return not inspect.isclass(target) and call is not None and predicate(call)


def is_async_callable(func: Callable[..., Any]) -> bool:
    """Whether calling `func` returns an awaitable: `async def`, or `async def __call__`."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - the method itself is inspected
    return not inspect.isclass(func) and inspect.iscoroutinefunction(call)


def build_registry(settings: Settings) -> tuple[dict[str, RegisteredFunction], list[str]]:
    """Import every function of `settings.functions`.

    Returns those that imported and the problems, each "<file>: functions.<name>.path: <problem>".
    """
    label = _label(settings)
    functions: dict[str, RegisteredFunction] = {}
    problems: list[str] = []
    for name, function_settings in settings.functions.items():
        try:
            func = import_path(function_settings.path, what="job function")
        except ImportPathError as error:
            problems.append(f"{label}: {join_path('functions', name)}.path: {error}")
            continue
        functions[name] = RegisteredFunction(
            settings=function_settings, func=func, is_async=is_async_callable(func)
        )
    return functions, problems


def load_hooks(settings: Settings) -> tuple[Hooks, list[str]]:
    """Import the startup and shutdown hooks; each must accept one argument, the `state` dict."""
    label = _label(settings)
    loaded: dict[str, Callable[..., Any] | None] = {"startup": None, "shutdown": None}
    problems: list[str] = []
    for which, path in (("startup", settings.hooks.startup), ("shutdown", settings.hooks.shutdown)):
        if path is None:
            continue
        try:
            hook = import_path(path, what=f"{which} hook")
        except ImportPathError as error:
            problems.append(f"{label}: hooks.{which}: {error}")
            continue
        if not _accepts_one_argument(hook):
            problems.append(
                f"{label}: hooks.{which}: {path!r} must accept one argument (state: dict)"
            )
            continue
        loaded[which] = hook
    return Hooks(startup=loaded["startup"], shutdown=loaded["shutdown"]), problems


def _accepts_one_argument(hook: Callable[..., Any]) -> bool:
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):  # a builtin without a signature: cannot tell, so trust it
        return True
    try:
        signature.bind({})
    except TypeError:
        return False
    return True


def check(settings: Settings) -> list[str]:
    """Every problem importing the functions and hooks of `settings` (for `jobd check`)."""
    _, function_problems = build_registry(settings)
    _, hook_problems = load_hooks(settings)
    return function_problems + hook_problems


def _label(settings: Settings) -> str:
    return str(settings.source) if settings.source is not None else STRING_SOURCE
