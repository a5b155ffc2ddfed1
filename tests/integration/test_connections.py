"""jobd's asyncio connections (jobd.redis.connect._LeanConnection) against a real Redis: commands the
socket takes at once, commands too big for it, and a write that Redis never reads."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from jobd.redis.connect import execute_raw, open_async
from tests.support.redis_server import RedisServer


def lean_client(server: RedisServer, **options: object) -> redis.asyncio.Redis:
    return open_async(server.url, retry=Retry(NoBackoff(), 0), **options)


async def test_small_and_large_commands_and_pipelines_round_trip(own_redis: RedisServer) -> None:
    client = lean_client(own_redis, socket_timeout=10, health_check_interval=10)
    try:
        assert client.connection_pool.connection_class.__name__ == "LeanConnection"
        big = b"x" * (32 * 1024 * 1024)  # more than a socket takes at once: drained, not dropped
        assert await client.set("big", big)
        assert await client.strlen("big") == len(big)
        pipe = client.pipeline(transaction=False)
        pipe.set("a", "1").incr("a").get("a")
        assert await pipe.execute() == [True, 2, b"2"]
        assert [await client.incr("n") for _ in range(100)] == list(range(1, 101))
    finally:
        await client.aclose()


async def test_a_write_redis_does_not_read_times_out(own_redis: RedisServer) -> None:
    client = lean_client(own_redis, socket_timeout=0.5)
    try:
        await client.ping()
        own_redis.pause()
        try:
            with pytest.raises((redis.exceptions.TimeoutError, redis.exceptions.ConnectionError)):
                await client.set("big", b"x" * (64 * 1024 * 1024))
        finally:
            own_redis.resume()
        # the timed-out connection closes once Redis has read what was buffered (redis-py closes
        # it without waiting, as it does without jobd's connection class)
        with own_redis.client() as admin:
            for _ in range(3000):  # the event loop must run meanwhile: it flushes and closes
                if admin.info("clients")["connected_clients"] == 1:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the timed-out connection never closed")
        assert await client.ping()  # a fresh connection replaces the one that timed out
    finally:
        await client.aclose()


async def test_a_due_health_check_goes_before_the_command(own_redis: RedisServer) -> None:
    """With the health check due, redis-py's own path sends its PING first: replies stay in step."""
    client = lean_client(own_redis, socket_timeout=5, health_check_interval=1)
    try:
        await client.set("k", "v")
        connection = await client.connection_pool.get_connection()
        connection.next_health_check = 0  # due now
        await client.connection_pool.release(connection)
        assert await client.get("k") == b"v"
        assert await client.incr("n") == 1
    finally:
        await client.aclose()


async def test_a_unix_socket_url_gets_the_lean_connection(tmp_path: Path) -> None:
    # a short path: unix socket paths are limited to about 100 bytes
    socket_dir = Path(tempfile.mkdtemp(prefix="jobd-sock-"))
    socket_path = socket_dir / "redis.sock"
    args = ["--unixsocket", str(socket_path), "--unixsocketperm", "700"]
    try:
        with RedisServer(tmp_path / "redis", appendonly=False, extra_args=args):
            client = open_async(f"unix://{socket_path}", socket_timeout=5)
            try:
                assert client.connection_pool.connection_class.__name__ == (
                    "LeanUnixDomainSocketConnection"
                )
                assert await client.set("k", "v")
                assert await client.get("k") == b"v"
            finally:
                await client.aclose()
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


def _connection_count(server: RedisServer) -> int:
    with server.client() as admin:
        return int(admin.info("clients")["connected_clients"]) - 1  # less the admin itself


async def test_execute_raw_keeps_one_connection_for_calls_in_turn(own_redis: RedisServer) -> None:
    client = lean_client(own_redis, socket_timeout=5)
    try:
        replies = [await execute_raw(client, "EVAL", "return ARGV[1]", 0, i) for i in range(50)]
        assert replies == [str(i).encode() for i in range(50)]
        assert _connection_count(own_redis) == 1
        # calls at the same time each take a connection of their own, and read their own reply
        script = "redis.call('INCR', KEYS[1]); return ARGV[1]"
        together = await asyncio.gather(
            *(execute_raw(client, "EVAL", script, 1, "n", i) for i in range(20))
        )
        assert together == [str(i).encode() for i in range(20)]
        assert await client.get("n") == b"20"
    finally:
        await client.aclose()


async def test_execute_raw_an_error_reply_leaves_the_connection_in_step(
    own_redis: RedisServer,
) -> None:
    client = lean_client(own_redis, socket_timeout=5)
    try:
        with pytest.raises(redis.exceptions.NoScriptError):
            await execute_raw(client, "EVALSHA", "0" * 40, 0)
        with pytest.raises(redis.exceptions.ResponseError, match="boom"):
            await execute_raw(client, "EVAL", "return redis.error_reply('boom')", 0)
        assert await execute_raw(client, "EVAL", "return 7", 0) == 7
        assert _connection_count(own_redis) == 1
    finally:
        await client.aclose()


async def test_execute_raw_replays_on_a_fresh_connection_after_a_kill(
    own_redis: RedisServer,
) -> None:
    """Redis closed the kept connection: the call goes on through redis-py's retries."""
    client = open_async(own_redis.url, socket_timeout=5, retry=Retry(NoBackoff(), 1))
    try:
        assert await execute_raw(client, "EVAL", "return redis.call('INCR', KEYS[1])", 1, "n") == 1
        with own_redis.client() as admin:
            assert admin.client_kill_filter(_type="normal", skipme=True) == 1
        assert await execute_raw(client, "EVAL", "return redis.call('INCR', KEYS[1])", 1, "n") == 2
    finally:
        await client.aclose()


async def test_execute_raw_cancelled_mid_call_never_hands_its_reply_to_the_next(
    own_redis: RedisServer,
) -> None:
    client = lean_client(own_redis, socket_timeout=5)
    try:
        assert await execute_raw(client, "EVAL", "return 'warm'", 0) == b"warm"
        own_redis.pause()
        try:
            call = asyncio.create_task(execute_raw(client, "EVAL", "return 'first'", 0))
            await asyncio.sleep(0)  # one turn: the call sends, then waits for its reply
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        finally:
            own_redis.resume()
        assert await execute_raw(client, "EVAL", "return 'second'", 0) == b"second"
        assert await execute_raw(client, "EVAL", "return 'third'", 0) == b"third"
    finally:
        await client.aclose()
