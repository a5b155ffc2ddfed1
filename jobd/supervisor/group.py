"""The supervisor of `jobd --processes N`: starts N workers, restarts the ones that die, forwards
SIGTERM/SIGINT so that all drain, and stands for the group towards systemd.

Each worker is the ordinary daemon (`python -m jobd run`), started afresh (never forked from the
supervisor: no state shared by accident), in a process group of its own (a Ctrl-C in a terminal
reaches the supervisor only, which forwards it once). Its exit decides: 78 (configuration or
credential error) stops the whole group with 78; any other death is restarted after the backoff of
RestartPolicy; in burst mode exit 0 means its work is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from jobd.config.settings import Settings
from jobd.ops.health import wait_for
from jobd.ops.systemd import HTTP_PORT_FIELD, SUPERVISOR_ENV, Notifier
from jobd.supervisor.notify import NotifySocket
from jobd.supervisor.policy import EXIT_CONFIG, RestartPolicy, describe_exit
from jobd.supervisor.probes import GroupProbes, GroupServer
from jobd.supervisor.table import ProcessTable, Slot, SlotState

logger = logging.getLogger("jobd.supervisor")

EXIT_OK = 0
EXIT_FAILURE = 1
STOP_GRACE_SECONDS = 30.0
"""Past drain_timeout, how long a worker may take to cancel, requeue and leave (it needs at most
10 s + 5 s) before the supervisor kills it; its jobs then come back when their leases expire."""


class Supervisor:
    """Runs `len(table.slots)` copies of `command` until a signal, an exit 78, or (burst) the end."""

    def __init__(
        self,
        settings: Settings,
        command: Sequence[str],
        *,
        processes: int,
        burst: bool = False,
        policy: RestartPolicy | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.command = list(command)
        self.burst = burst
        self.policy = policy or RestartPolicy()
        self.environ = dict(os.environ if environ is None else environ)
        self.table = ProcessTable.of(processes, self.policy.crash_loop)
        self.probes = GroupProbes(self.table)
        self.notifier = Notifier(self.environ)  # systemd's socket: the supervisor alone uses it
        self.exit_code = EXIT_OK
        self._stop = asyncio.Event()
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._announced = False
        self._watchdog_usec = self.environ.get("WATCHDOG_USEC", "")

    # -- the run -----------------------------------------------------------------------------------

    async def run(self) -> int:
        """Serve the probes, run the workers until the group ends; returns the exit code."""
        http = self.settings.http
        server = GroupServer(http.host, http.port, http.listen, self.probes)
        server.start()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self._on_signal, number)
        logger.info("supervisor (pid %d): starting %d workers", os.getpid(), len(self.table.slots))
        watchdog = asyncio.create_task(self._watchdog())
        deadline: asyncio.Task[None] | None = None
        try:
            keepers = asyncio.gather(*(self._keep(slot) for slot in self.table.slots))
            stopping = asyncio.create_task(self._stop.wait())
            first: list[asyncio.Future[Any]] = [keepers, stopping]
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if self._stop.is_set():
                deadline = asyncio.create_task(self._enforce_deadline())
            await keepers
            stopping.cancel()
        finally:
            watchdog.cancel()
            if deadline is not None:
                deadline.cancel()
            for number in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(number)
            server.close()
            self.probes.close()
            self.notifier.close()
        logger.info("supervisor: all workers stopped, exiting with %d", self.exit_code)
        return self.exit_code

    def _on_signal(self, number: int) -> None:
        name = signal.Signals(number).name
        if not self._stop.is_set():
            logger.info("%s received: draining every worker (send it again to stop waiting)", name)
            self.stop()
        else:
            logger.warning("%s received again: passing it on to the workers", name)
        self._signal_all(number)

    def stop(self, code: int = EXIT_OK) -> None:
        """Start the group's drain; `code` is the exit code if nothing worse happens."""
        self.exit_code = max(self.exit_code, code)
        if self._stop.is_set():
            return
        self.table.stopping = True
        self._stop.set()
        self.notifier.stopping(self.settings.worker.drain_timeout)

    def _signal_all(self, number: int) -> None:
        for process in list(self._procs.values()):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(number)

    async def _enforce_deadline(self) -> None:
        await asyncio.sleep(self.settings.worker.drain_timeout + STOP_GRACE_SECONDS)
        for pid, process in list(self._procs.items()):
            logger.error("worker (pid %d) still running after the drain: killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            self.exit_code = max(self.exit_code, EXIT_FAILURE)

    # -- one slot ----------------------------------------------------------------------------------

    async def _keep(self, slot: Slot) -> None:
        """Keep worker `slot` running until the group stops (or, in burst mode, its work ends)."""
        while not self._stop.is_set():
            try:
                code = await self._run_once(slot)
            except OSError as error:  # the interpreter cannot be started: nothing to restart
                logger.error("%s could not be started: %s", slot.name, error)
                slot.last_exit = f"not started: {error}"
                self.stop(EXIT_FAILURE)
                self._signal_all(signal.SIGTERM)
                break
            if self._stop.is_set():
                if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                    logger.warning("%s %s while draining", slot.name, describe_exit(code))
                    self.exit_code = max(self.exit_code, EXIT_CONFIG if code == 78 else 1)
                break
            if code == EXIT_CONFIG:
                logger.error(
                    "%s exited with 78 (configuration or Redis credential error): stopping every "
                    "worker", slot.name,
                )  # fmt: skip
                self.stop(EXIT_CONFIG)
                self._signal_all(signal.SIGTERM)
                break
            if self.burst and code == 0:
                slot.finished = True
                break
            ran = time.monotonic() - slot.started
            slot.failures = self.policy.failures_after(slot.failures, ran)
            delay = self.policy.delay(slot.failures)
            slot.state = SlotState.RESTARTING
            slot.restart_at = time.monotonic() + delay
            logger.warning(
                "%s %s after %.1f s; restarting it in %g s (death %d in a row)",
                slot.name, slot.last_exit, ran, delay, slot.failures,
                extra={"event": "worker_died", "exit": slot.last_exit},
            )  # fmt: skip
            self.notifier.status(self.table.status_line())
            if await wait_for(self._stop, delay):
                break
            slot.restarts += 1
            reason = "signal" if code < 0 else "exit"
            self.table.restarts[reason] = self.table.restarts.get(reason, 0) + 1
        slot.state = SlotState.STOPPED

    async def _run_once(self, slot: Slot) -> int:
        """Start the slot's worker and wait for it to end; returns its exit code."""
        loop = asyncio.get_running_loop()
        notify = NotifySocket(None)
        loop.add_reader(notify.fileno(), notify.read, lambda fields: self._notified(slot, fields))
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.DEVNULL, env=self._child_env(notify),
                process_group=0,
            )  # fmt: skip
            pid = process.pid
            self._procs[pid] = process
            slot.spawned(pid)
            logger.info("%s started", slot.name)
            if self._stop.is_set():  # a signal came while it was being started
                process.send_signal(signal.SIGTERM)
            code = await process.wait()
        finally:
            loop.remove_reader(notify.fileno())
            notify.close()
        self._procs.pop(pid, None)
        self.probes.retire(pid)
        slot.last_exit = describe_exit(code)
        slot.port = None
        if slot.state == SlotState.RUNNING:
            slot.state = SlotState.STARTING  # not ready any more (its state is set next)
        return code

    def _child_env(self, notify: NotifySocket) -> dict[str, str]:
        env = dict(self.environ)
        env[SUPERVISOR_ENV] = str(os.getpid())
        env["NOTIFY_SOCKET"] = notify.address
        env.pop("WATCHDOG_PID", None)
        if not self._watchdog_usec:
            env.pop("WATCHDOG_USEC", None)
        return env

    # -- what the workers say, and systemd -----------------------------------------------------------

    def _notified(self, slot: Slot, fields: Mapping[str, str]) -> None:
        if fields.get(HTTP_PORT_FIELD, "").isdigit():
            slot.port = int(fields[HTTP_PORT_FIELD])
        if "STATUS" in fields:
            slot.status = fields["STATUS"]
        if fields.get("WATCHDOG") == "1":
            slot.last_ping = time.monotonic()
        if fields.get("READY") == "1" and slot.state == SlotState.STARTING:
            slot.state = SlotState.RUNNING
            slot.ready_at = time.monotonic()
            logger.info("%s ready", slot.name)
            if self.table.all_ready() and not self._announced and not self._stop.is_set():
                self._announced = True
                logger.info("supervisor: all %d workers ready", len(self.table.slots))
                self.notifier.ready(self.table.status_line())
            else:
                self.notifier.status(self.table.status_line())

    async def _watchdog(self) -> None:
        """With WatchdogSec: ping systemd while the group is healthy, and kill a worker whose own
        pings (to the supervisor) stopped for WATCHDOG_USEC, as systemd would; it is restarted."""
        if self.notifier.watchdog_interval is None:
            return
        limit = int(self._watchdog_usec) / 1_000_000
        while True:
            if not self.table.problems():
                self.notifier.send("WATCHDOG=1")
            now = time.monotonic()
            for slot in self.table.live():
                seen = slot.last_ping or slot.ready_at
                if seen is not None and now - seen > limit and slot.pid in self._procs:
                    logger.error(
                        "%s sent no watchdog ping for %.0f s: killing it", slot.name, limit
                    )
                    with contextlib.suppress(ProcessLookupError):
                        self._procs[slot.pid].kill()
            await asyncio.sleep(self.notifier.watchdog_interval)


def worker_command(
    path: str, *, burst: bool, log_level: str | None, log_format: str | None
) -> list[str]:
    """How the supervisor starts one worker: this interpreter running `jobd run`."""
    command = [sys.executable, "-m", "jobd", "run", "--config", path]
    if log_level:
        command += ["--log-level", log_level]
    if log_format:
        command += ["--log-format", log_format]
    return command + (["--burst"] if burst else [])
