"""The chaos suite's harness (docs/reliability.md §5.1): a private redis-server under test that may be
killed, paused or restarted; the session server as the never-faulted ledger; jobd daemons as
subprocesses; producers that retry an enqueue with the same job id until it is acknowledged; and
the invariant checker over the ledger and the final Redis state.

Waits are condition-based with generous deadlines (hang guards); nothing asserts a duration.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from jobd.client import SyncClient
from tests.support.checker import Entry, Expect, assert_invariants, read_ledger, snapshot
from tests.support.daemon import Daemon, write_config
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until

GUARD = 60.0
"""Deadline of every wait: a hang guard, not a timing assertion."""
LEASE = 1.0
CHAOS_FUNCTIONS = ("chaos", "sync_chaos", "block_chaos", "crash_now")
FAST_RETRY = {"retry": {"base": "10ms", "max": "50ms", "jitter": False}}
ENQUEUE_ERRORS = (redis.RedisError, OSError, Exception)
LONG = (pytest.mark.chaos_long, pytest.mark.timeout(900))
"""Marks of the long variants (`-m chaos_long`): N = 10,000 or minutes of faults."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.chaos)


class Chaos:
    """One scenario's world: the Redis under test, the ledger, the daemons, the producers."""

    def __init__(self, tmp_path: Path, ledger: RedisServer, prefix: str) -> None:
        self.tmp_path = tmp_path
        self.ledger_server = ledger
        self.prefix = prefix
        self.ledger_key = f"{prefix}:ledger"
        self.redis: RedisServer | None = None
        self.daemons: list[Daemon] = []
        self.names: dict[Daemon, str] = {}
        self.rng = random.Random(int(os.environ.get("CHAOS_SEED", "4711")))
        self._ledger = ledger.client()

    # -- the system under test ----------------------------------------------------------------

    def start_redis(self, **options: Any) -> RedisServer:
        options.setdefault("appendonly", True)
        self.redis = RedisServer(self.tmp_path / "redis", **options)
        self.redis.start()
        return self.redis

    @property
    def url(self) -> str:
        assert self.redis is not None, "start_redis() first"
        return self.redis.url

    def client(self) -> redis.Redis:
        assert self.redis is not None
        return self.redis.client(socket_timeout=10)

    def config(self, url: str | None = None, name: str = "jobs.toml", **sections: Any) -> Path:
        """A jobs.toml with the test functions, lease 1 s and fast retries; `sections` merge."""
        worker = {"concurrency": 50, "lease_timeout": f"{LEASE}s", **sections.pop("worker", {})}
        defaults = {**FAST_RETRY, **sections.pop("defaults", {})}
        functions = {n: {"path": f"tests.jobs_for_tests:{n}"} for n in CHAOS_FUNCTIONS}
        functions.update(sections.pop("functions", {}))
        return write_config(
            self.tmp_path, url or self.url, self.prefix, filename=name, worker=worker,
            defaults=defaults, functions=functions, **sections,
        )  # fmt: skip

    def daemon(self, config: Path | None = None, *args: str, name: str = "") -> Daemon:
        """Start a worker daemon (JSON logs) and wait until it takes jobs."""
        daemon = Daemon(
            config or self.config(), "--log-format", "json", *args,
            ledger_url=self.ledger_server.url, log_dir=self.tmp_path,
        )  # fmt: skip
        self.daemons.append(daemon)
        self.names[daemon] = name or f"worker{len(self.daemons)}"
        daemon.start().wait_running()
        return daemon

    def kill(self, daemon: Daemon) -> float:
        """SIGKILL; returns when it is dead (ledger clock), for the checker's `stopped`."""
        daemon.kill()
        assert daemon.returncode == -signal.SIGKILL, daemon.returncode
        return time.time()

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every daemon still running, wait for the exits: name -> exit code (I7)."""
        running = [d for d in self.daemons if d.running]
        for daemon in running:
            daemon.terminate()
        return {self.names[d]: d.wait_exit(GUARD) for d in running}

    # -- producing ----------------------------------------------------------------------------

    def enqueue(
        self,
        count: int,
        function: str = "chaos",
        *args: Any,
        producers: int = 1,
        url: str | None = None,
        start: int = 0,
        **options: Any,
    ) -> list[str]:
        """Enqueue `count` jobs `function(ledger key, *args)` from `producers` threads; each call
        that fails is retried with the same job id until acknowledged. Returns the ids."""
        ids = [f"j{start + i}" for i in range(count)]
        shares = [ids[n::producers] for n in range(producers)]
        errors: list[BaseException] = []

        def produce(share: Sequence[str]) -> None:
            try:
                with SyncClient(url or self.url, key_prefix=self.prefix) as jobs:
                    for job_id in share:
                        self._enqueue_one(jobs, job_id, function, args, options)
            except BaseException as error:  # noqa: BLE001 - reported by the caller
                errors.append(error)

        threads = [threading.Thread(target=produce, args=(share,)) for share in shares]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(GUARD)
        assert not errors, errors
        return ids

    def _enqueue_one(
        self, jobs: SyncClient, job_id: str, function: str, args: Any, options: Any
    ) -> None:
        deadline = time.monotonic() + GUARD
        while True:
            try:
                jobs.enqueue(function, self.ledger_key, *args, job_id=job_id, **options)
                return
            except ENQUEUE_ERRORS:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # the producer's backoff before it re-sends with the same id

    # -- observing ----------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        return read_ledger(self._ledger, self.ledger_key)

    def starts(self, pid: int | None = None) -> list[Entry]:
        return [e for e in self.entries() if e.event == "start" and pid in (None, e.pid)]

    def statuses(self, ids: Sequence[str], queue: str = "default") -> list[str | None]:
        with self.client() as conn:
            pipe = conn.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(f"{self.prefix}:{{{queue}}}:job:{job_id}", "status")
            return [s.decode() if s else None for s in pipe.execute()]

    def wait_done(self, ids: Sequence[str], guard: float = GUARD) -> None:
        """Wait until every job has ended (succeeded, failed or aborted). A job seen ended counts
        as such even once its result expired (short keep_result)."""
        pending = list(ids)

        def done() -> bool:
            nonlocal pending
            try:
                states = self.statuses(pending)
            except redis.RedisError:
                return False
            ended = ("succeeded", "failed", "aborted")
            pending = [i for i, s in zip(pending, states, strict=True) if s not in ended]
            return not pending

        try:
            wait_until(done, guard, interval=0.1, message=f"{len(ids)} jobs ended")
        except AssertionError as error:
            left = list(zip(pending, self.statuses(pending), strict=True))
            raise AssertionError(f"{error}; not ended: {left[:20]}") from None

    def metric(self, daemon: Daemon, name: str, **labels: str) -> float:
        status, body = daemon.get("/metrics")
        assert status == 200, body
        return sum(
            sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def succeeded(self, workers: Sequence[Daemon], expected: int) -> float:
        """jobd_jobs_finished_total{outcome=succeeded} over `workers`, once it reaches `expected`
        (a worker counts a job when the reply of its finish arrives, which may be after Redis
        shows it succeeded), or after a short hang guard (then the checker reports the gap)."""
        counted: list[float] = [0.0]

        def reached() -> bool:
            counted[0] = sum(
                self.metric(w, "jobd_jobs_finished_total", outcome="succeeded") for w in workers
            )
            return counted[0] >= expected

        with contextlib.suppress(AssertionError):
            wait_until(reached, 10, interval=0.1)
        return counted[0]

    def check(self, expect: Expect, entries: list[Entry] | None = None) -> None:
        with self.client() as conn:
            state = snapshot(conn, self.prefix)
        assert_invariants(self.entries() if entries is None else entries, state, expect)

    def logs(self, daemon: Daemon) -> str:
        return daemon.log_text()

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.close()
        if self.redis is not None:
            self.redis.close()
        self._ledger.close()


@pytest.fixture
def chaos(
    tmp_path: Path, redis_server: RedisServer, key_prefix: str, request: pytest.FixtureRequest
) -> Iterator[Chaos]:
    world = Chaos(tmp_path, redis_server, key_prefix)
    yield world
    failed = getattr(request.node, "chaos_failed", True)
    world.close()
    if failed:
        for daemon in world.daemons:
            lines = daemon.log_text().splitlines()
            trouble = [line for line in lines if '"level": "info"' not in line]
            shown = "\n".join([*trouble[-60:], "--- last lines:", *lines[-15:]])
            print(f"===== {world.names[daemon]} {daemon!r}\n{shown}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.chaos_failed = report.failed  # type: ignore[attr-defined]
    return report


def until(predicate: Callable[[], bool], message: str, guard: float = GUARD) -> None:
    wait_until(predicate, guard, interval=0.02, message=message)
