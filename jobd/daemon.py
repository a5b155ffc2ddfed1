"""The composition root of `jobd run`: uvloop, signal handlers, hooks, the worker, and the exit code
(and, with `redis.url = "embedded"`, the private Redis around them). The only module that imports
uvloop."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import signal
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from jobd.config.settings import Settings
from jobd.errors import ConfigError, RedisAuthError
from jobd.ops.health import Health, watch_loop
from jobd.ops.metrics import Metrics
from jobd.ops.probes import HttpServer
from jobd.ops.systemd import Notifier
from jobd.worker.functions import RegisteredFunction, build_registry, load_hooks
from jobd.worker.lifecycle import Instruments, Shutdown, Worker

if TYPE_CHECKING:
    from jobd.redis.embedded import EmbeddedRedis

logger = logging.getLogger("jobd.daemon")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 78
LOOP_TICK_SECONDS = 0.25
"""How often the event loop watcher ticks (its lateness is jobd_event_loop_lag_seconds)."""
GC_YOUNG_THRESHOLD = 5000
"""Net new container objects between two collections of the youngest generation (Python: 700)."""


def settle_heap() -> None:
    """Prepare the collector for the run, once everything long-lived is loaded.

    What is loaded by now (modules, job functions, settings) lives as long as the process: frozen,
    it is not traversed again by every full collection (callgrind: ~1 % of a no-op job's
    instructions). The young garbage of startup is collected first, not frozen with it: only the
    young generations, because a full collection here traverses every module loaded and took
    10-25 ms of startup (bench.startup) to free a handful of objects (6 in a worker with redis-py and
    prometheus-client loaded), which are now frozen instead; collecting generation 1 takes 0.4 ms.

    A hundred running jobs keep a few thousand young objects alive (tasks, frames, futures,
    records), so at Python's threshold of 700 the youngest generation was collected every 20 jobs,
    its survivors traversed again in the older ones: 4-5 % of a no-op drain's CPU time (gc.callbacks,
    20,000 jobs: 95-105 ms against 4 ms at 5,000, which collects 15 times in all). Garbage cycles
    are still collected, a few thousand allocations later. A startup hook that sets thresholds
    of its own runs after this, so they apply."""
    gc.collect(1)
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def prepare(settings: Settings) -> tuple[Mapping[str, RegisteredFunction], Any]:
    """Import every function and hook; ConfigError lists everything that cannot be imported, because
    a worker that starts with part of its functions would dead-letter the rest."""
    functions, problems = build_registry(settings)
    hooks, hook_problems = load_hooks(settings)
    problems = [*problems, *hook_problems]
    if problems:
        raise ConfigError(problems)
    return functions, hooks


async def _call_hook(hook: Callable[..., Any] | None, state: dict[str, Any]) -> None:
    if hook is None:
        return
    if inspect.iscoroutinefunction(hook):
        await hook(state)
    else:
        await asyncio.get_running_loop().run_in_executor(None, hook, state)


def _install_signal_handlers(shutdown: Shutdown) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(number: int) -> None:
        name = signal.Signals(number).name
        if not shutdown.stop.is_set():
            logger.info(
                "%s received: draining (send it again to stop waiting for running jobs)", name
            )
            shutdown.stop.set()
        else:
            logger.warning("%s received again: cancelling running jobs and requeueing them", name)
            shutdown.hurry.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)


async def serve(settings: Settings, *, burst: bool = False) -> int:
    """Run the worker with hooks, probes and signal handling until it stops; returns the exit code."""
    functions, hooks = prepare(settings)
    settle_heap()
    instruments = Instruments(
        metrics=Metrics(),
        health=Health(max_loop_lag=settings.http.max_loop_lag),
        notifier=Notifier(os.environ),
    )
    # Like sd_notify(3)'s unset_environment: job subprocesses must not talk to systemd as us.
    os.environ.pop("NOTIFY_SOCKET", None)
    server = HttpServer(
        settings.http.host, settings.http.port, settings.http.listen,
        instruments.health, instruments.metrics,
    )  # fmt: skip
    server.start()
    instruments.notifier.http_port(server.port)  # to a supervisor only (jobd --processes N)
    # The loop watcher spans startup and shutdown hooks too: a loop idling while Redis is down at
    # startup is alive, and liveness must say so.
    watcher = asyncio.create_task(
        watch_loop(
            instruments.health,
            min(LOOP_TICK_SECONDS, settings.http.max_loop_lag / 4),
            instruments.metrics.loop_lag.set,
        )
    )
    shutdown = Shutdown()
    _install_signal_handlers(shutdown)
    state: dict[str, Any] = {}
    try:
        await _call_hook(hooks.startup, state)
        worker = Worker(
            settings, functions, state=state, burst=burst, shutdown=shutdown,
            instruments=instruments,
        )  # fmt: skip
        try:
            await worker.run()
        finally:
            try:
                await _call_hook(hooks.shutdown, state)
            except Exception:
                logger.exception("shutdown hook %s failed", settings.hooks.shutdown)
    finally:
        watcher.cancel()
        server.close()
        instruments.notifier.close()
    return EXIT_OK


def _unwrap(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first leaf of an exception group (the TaskGroup's real cause)."""
    first = group.exceptions[0]
    return _unwrap(first) if isinstance(first, BaseExceptionGroup) else first


def run(settings: Settings, *, burst: bool = False) -> int:
    """Run the daemon on uvloop (the asyncio loop where uvloop is missing); returns the exit code."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    server: EmbeddedRedis | None = None
    try:
        if settings.redis.embedded:
            # imported only here: it costs a worker on a real Redis 25 ms of startup and 0.7 MiB
            from jobd.redis.embedded import start as start_embedded

            # Outside the event loop, so that it outlives the worker's drain; stopped below.
            server = start_embedded(settings)
            settings = server.settings_for(settings)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(serve(settings, burst=burst))
    except BaseExceptionGroup as group:
        error = _unwrap(group)
    except (ConfigError, RedisAuthError) as direct:
        error = direct
    finally:
        if server is not None:
            server.stop()
    if isinstance(error, (ConfigError, RedisAuthError)):
        logger.error("%s", error)
        return EXIT_CONFIG
    logger.error("worker stopped by an unexpected error", exc_info=error)
    return EXIT_FAILURE
