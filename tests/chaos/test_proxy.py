"""The chaos proxy does what each mode says, against a real redis-server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.proxy import ChaosProxy
from tests.support.redis_server import RedisServer


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[ChaosProxy]:
    with ChaosProxy("127.0.0.1", redis_server.port) as chaos_proxy:
        yield chaos_proxy


def client(proxy: ChaosProxy, retries: int = 0, timeout: float = 5) -> redis.Redis:
    return redis.Redis.from_url(
        proxy.url, socket_timeout=timeout, retry=Retry(NoBackoff(), retries)
    )


def test_pass_forwards_both_ways(proxy: ChaosProxy, key_prefix: str) -> None:
    with client(proxy) as conn:
        conn.set(f"{key_prefix}:k", "v")
        assert conn.get(f"{key_prefix}:k") == b"v"
    assert proxy.connections == 1


def test_reset_closes_open_connections(proxy: ChaosProxy) -> None:
    errors: list[BaseException] = []

    def ping(conn: redis.Redis) -> None:
        try:
            conn.ping()
        except redis.ConnectionError as error:
            errors.append(error)

    with client(proxy) as conn:
        assert conn.ping()
        proxy.set_mode("blackhole")  # keeps the next call in flight
        thread = threading.Thread(target=ping, args=(conn,))
        thread.start()
        time.sleep(0.2)  # let the request reach the proxy (the fault's timing, not a wait)
        assert proxy.reset() == 1
        thread.join(5)
        assert errors, "the call in flight did not see its connection closed"
        proxy.set_mode("pass")
        assert conn.ping()  # a new connection works


def test_refuse_closes_new_connections(proxy: ChaosProxy) -> None:
    proxy.set_mode("refuse")
    with client(proxy) as conn, pytest.raises(redis.ConnectionError):
        conn.ping()
    proxy.set_mode("pass")
    with client(proxy) as conn:
        assert conn.ping()


def test_blackhole_holds_traffic_until_it_heals(proxy: ChaosProxy) -> None:
    with client(proxy) as conn:
        assert conn.ping()
        proxy.set_mode("blackhole")
        with pytest.raises(redis.TimeoutError):
            client(proxy, timeout=0.3).ping()
        answered = threading.Event()
        thread = threading.Thread(target=lambda: conn.ping() and answered.set())
        thread.start()
        assert not answered.wait(0.3)  # held, not answered, connection still open
        proxy.set_mode("pass")
        thread.join(5)
        assert answered.is_set()


def test_delay_slows_each_reply(proxy: ChaosProxy) -> None:
    proxy.set_mode("delay", delay_ms=100)
    with client(proxy) as conn:
        started = time.monotonic()
        assert conn.ping()
        # the one place this suite looks at a duration: the fault itself, not jobd
        assert time.monotonic() - started >= 0.2


def test_drop_reply_runs_the_command_and_loses_its_reply(
    proxy: ChaosProxy, redis_server: RedisServer, key_prefix: str
) -> None:
    key = f"{key_prefix}:counter"
    proxy.set_mode("drop_reply", predicate=lambda data: b"INCR" in data)
    with client(proxy) as conn, pytest.raises(redis.ConnectionError):
        conn.incr(key)
    with redis_server.client() as direct:
        assert direct.get(key) == b"1"  # it ran
    # with redis-py's retries the command runs again: what jobd's scripts must survive
    with client(proxy, retries=1) as conn:
        proxy.set_mode("drop_reply", predicate=lambda data: b"INCR" in data and not proxy.dropped)
        proxy.dropped.clear()
        assert conn.incr(key) == 3
    assert len(proxy.dropped) == 1
