"""The group's /healthz, /readyz and /metrics on `http.listen`, answered from the process table and
the workers' own endpoints (each on a private port of 127.0.0.1), asked in parallel at each request.

- /healthz: 200 unless a worker restarts too often or is down for good, or a worker's own /healthz
  fails (its event loop is blocked) or does not answer. A worker waiting for its restart is not a
  failure by itself: the supervisor is handling it.
- /readyz: 200 when every worker is ready (running, reaching Redis): the group takes jobs at the
  capacity it was started with; a worker starting or restarting makes it 503, as a single worker
  that starts is.
- /metrics: the workers' metrics combined (jobd.supervisor.aggregate), with the supervisor's own.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import TYPE_CHECKING

from jobd.ops.probes import ProbeHandler, ProbeServer, ServerThread
from jobd.supervisor.table import ProcessTable, Slot, SlotState

if TYPE_CHECKING:
    from jobd.supervisor.aggregate import Aggregator

logger = logging.getLogger("jobd.http")

WORKER_TIMEOUT_SECONDS = 2.0
"""How long the supervisor waits for a worker's endpoint before counting it as not answering."""

Reply = tuple[int, bytes] | None


def ask(port: int, path: str) -> Reply:
    """GET `path` from a worker's private probe server: (status, body), None when it did not answer."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}{path}", timeout=WORKER_TIMEOUT_SECONDS
        ) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code), bytes(error.read())
    except (OSError, ValueError):
        return None


class GroupProbes:
    """What the group's endpoints answer. The metrics machinery (prometheus-client) is loaded at
    the first scrape: a worker that dies before it had nothing scraped to keep."""

    def __init__(self, table: ProcessTable) -> None:
        self.table = table
        self._aggregator: Aggregator | None = None
        self._aggregator_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="jobd-probe")

    def _ask_all(self, slots: list[Slot], path: str) -> list[Reply]:
        def one(slot: Slot) -> Reply:
            return ask(slot.port, path) if slot.port is not None else None

        return list(self._pool.map(one, slots))

    def health(self) -> tuple[bool, str]:
        problems = self.table.problems()
        running = [slot for slot in self.table.live() if slot.state == SlotState.RUNNING]
        problems += self._refusals(running, "/healthz")
        return not problems, "; ".join(problems)

    def readiness(self) -> tuple[bool, str]:
        if self.table.stopping:
            return False, "draining"
        waiting = []
        for slot in self.table.slots:
            if slot.state == SlotState.RESTARTING:
                waiting.append(f"{slot.name} restarting")
            elif slot.state != SlotState.RUNNING:
                waiting.append(f"{slot.name} {slot.state.value}")
        running = [slot for slot in self.table.slots if slot.state == SlotState.RUNNING]
        waiting += self._refusals(running, "/readyz")
        return not waiting, "; ".join(waiting)

    def _refusals(self, slots: list[Slot], path: str) -> list[str]:
        """Why each of `slots` whose worker does not answer `path` with 200 is not fine."""
        found = []
        for slot, reply in zip(slots, self._ask_all(slots, path), strict=True):
            if reply is None:
                found.append(f"{slot.name} does not answer {path}")
            elif reply[0] != HTTPStatus.OK:
                found.append(f"{slot.name}: {reply[1].decode(errors='replace').strip()}")
        return found

    def retire(self, pid: int) -> None:
        """Worker process `pid` ended: its counts stay in the sums (see Aggregator.retire)."""
        with self._aggregator_lock:
            if self._aggregator is not None:
                self._aggregator.retire(pid)

    def metrics(self) -> bytes:
        from jobd.supervisor.aggregate import Aggregator
        from jobd.supervisor.metrics import supervisor_families

        with self._aggregator_lock:
            if self._aggregator is None:
                self._aggregator = Aggregator()
            aggregator = self._aggregator
        live = [slot for slot in self.table.live() if slot.pid is not None]
        for slot, reply in zip(live, self._ask_all(live, "/metrics"), strict=True):
            if reply is not None and reply[0] == HTTPStatus.OK and slot.pid is not None:
                aggregator.update(slot.pid, reply[1].decode())
        pids = [slot.pid for slot in live if slot.pid is not None]
        return aggregator.render(pids, supervisor_families(self.table))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Handler(ProbeHandler):
    server: _Server

    def do_GET(self) -> None:
        probes = self.server.probes
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            healthy, why = probes.health()
            status = HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE
            self._reply(status, b"ok\n" if healthy else f"{why}\n".encode())
        elif path == "/readyz":
            ready, why = probes.readiness()
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            self._reply(status, b"ready\n" if ready else f"not ready: {why}\n".encode())
        elif path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST  # as the workers serve it

            self._reply(HTTPStatus.OK, probes.metrics(), CONTENT_TYPE_LATEST)
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found: try /healthz, /readyz or /metrics\n")


class _Server(ProbeServer):
    def __init__(self, address: tuple[str, int], probes: GroupProbes) -> None:
        self.probes = probes
        super().__init__(address, _Handler)


class GroupServer(ServerThread):
    """Serves the group's endpoints on `host:port` from a daemon thread until `close()`."""

    def __init__(self, host: str, port: int, listen: str, probes: GroupProbes) -> None:
        super().__init__(listen, lambda: _Server((host, port), probes), " for the group")
