"""The worker side of `jobd --processes N`: what a worker started by the supervisor does differently.

The supervisor marks its workers with JOBD_SUPERVISOR (its pid). Such a worker serves its probes on a
private port (127.0.0.1:0, announced to the supervisor over its notify socket; the supervisor serves
the configured `http.listen` for the group), and ends with its supervisor: on Linux the kernel sends
it a signal when the supervisor dies (PR_SET_PDEATHSIG), and a thread watches the parent pid (within
a second, everywhere).
Either way the worker drains as on any SIGTERM: its running jobs finish or are requeued.

The kernel's signal is SIGUSR2, turned into one SIGTERM here: the parent-death signal fires again
each time the process is reparented to a subreaper that then exits (`timeout`, some container
inits), and a second SIGTERM would cut the drain short.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping

from jobd.config.settings import Settings
from jobd.ops.systemd import SUPERVISOR_ENV

logger = logging.getLogger("jobd.supervisor")

PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when its parent dies (linux/prctl.h)."""
PARENT_DEATH_SIGNAL = signal.SIGUSR2
PARENT_POLL_SECONDS = 1.0
"""How often a worker looks at its parent pid (beside the kernel's signal, on Linux)."""
PRIVATE_LISTEN = "127.0.0.1:0"


class SupervisorGone(Exception):
    """The supervisor died before this worker could tie itself to it."""


def supervisor_pid(environ: Mapping[str, str]) -> int | None:
    """The pid of the supervisor that started this process, None when it runs on its own."""
    value = environ.get(SUPERVISOR_ENV, "")
    return int(value) if value.isdigit() else None


def adopt(settings: Settings, parent: int) -> Settings:
    """Tie this process to its supervisor `parent` and return the settings it runs with: the same,
    with the probes on a private port. Raises SupervisorGone if `parent` is no longer our parent."""
    _end_with_parent(parent)
    http = dataclasses.replace(settings.http, listen=PRIVATE_LISTEN, host="127.0.0.1", port=0)
    return dataclasses.replace(settings, http=http)


def _end_with_parent(parent: int) -> None:
    threading.Thread(target=_drain_once, name="jobd-parent-death", daemon=True).start()
    if sys.platform == "linux":
        signal.signal(PARENT_DEATH_SIGNAL, _parent_died)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0) != 0:
            error = ctypes.get_errno()
            logger.warning("prctl(PR_SET_PDEATHSIG) failed (%s): watching the parent pid only",
                           os.strerror(error))  # fmt: skip
    # Also on Linux: a Python signal handler runs only when the main thread runs Python code,
    # which an event loop idle in C may not do soon (seen: a worker that outlived its supervisor)
    _watch_parent(parent)
    # The supervisor may have died before prctl: then nothing would ever signal us.
    if os.getppid() != parent:
        raise SupervisorGone(f"the supervisor (pid {parent}) is gone")


_parent_gone = threading.Event()


def _parent_died(number: int, frame: object) -> None:
    _parent_gone.set()  # again and again if it must: _drain_once sends one SIGTERM


def _drain_once() -> None:
    # SIGTERM from a thread, as from outside: raised inside a signal handler, the event loop
    # saw it twice (a second SIGTERM hurries the drain)
    _parent_gone.wait()
    logger.warning("the supervisor is gone: draining")
    os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while not _parent_gone.wait(PARENT_POLL_SECONDS):
            if os.getppid() != parent:
                _parent_gone.set()

    threading.Thread(target=watch, name="jobd-parent-watch", daemon=True).start()
