"""Tests of the test harness itself: RedisServer against a real redis-server, and wait."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support import redis_server as rs
from tests.support.redis_server import RedisServer
from tests.support.wait import async_wait_until, wait_until


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port held by a listening socket for the duration of the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _aof_written(server: RedisServer) -> bool:
    """True once the AOF buffer reached the file (survives SIGKILL of the process)."""
    with server.client() as conn:
        return int(conn.info("persistence")["aof_buffer_length"]) == 0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_start_and_ping(redis_server: RedisServer, redis_url: str, key_prefix: str) -> None:
    assert redis_server.is_running
    assert redis_server.port != 6379
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    with redis_server.client() as conn:
        assert conn.ping()
        conn.set(f"{key_prefix}:k", "v")
        assert conn.get(f"{key_prefix}:k") == b"v"
        assert int(conn.info("server")["process_id"]) == redis_server.pid


def test_key_prefix_is_unique(key_prefix: str) -> None:
    assert key_prefix.startswith("t")
    assert len(key_prefix) == 11


async def test_async_client(redis_server: RedisServer, key_prefix: str) -> None:
    conn = redis_server.async_client()
    try:
        await conn.set(f"{key_prefix}:a", "1")
        assert await conn.get(f"{key_prefix}:a") == b"1"
    finally:
        await conn.aclose()


@pytest.mark.parametrize("graceful", [False, True], ids=["kill", "stop"])
def test_aof_on_data_survives_restart(own_redis: RedisServer, graceful: bool) -> None:
    port = own_redis.port
    with own_redis.client() as conn:
        conn.set("survivor", "yes")
    wait_until(lambda: _aof_written(own_redis), message="AOF buffer flushed")
    if graceful:
        own_redis.stop()
    else:
        own_redis.kill()
    assert not own_redis.is_running
    own_redis.restart(graceful=graceful)
    assert own_redis.port == port
    with own_redis.client() as conn:
        assert conn.get("survivor") == b"yes"


def test_aof_off_data_gone_after_restart(tmp_path: Path) -> None:
    with RedisServer(tmp_path, appendonly=False) as server:
        with server.client() as conn:
            conn.set("ephemeral", "x")
        server.restart()
        with server.client() as conn:
            assert conn.get("ephemeral") is None


def test_pause_times_out_and_resume_restores(own_redis: RedisServer) -> None:
    with own_redis.client(socket_timeout=0.3) as conn:
        assert conn.ping()
        own_redis.pause()
        assert own_redis.paused
        with pytest.raises(redis.exceptions.TimeoutError):
            conn.ping()
        own_redis.resume()
        assert not own_redis.paused
        assert conn.ping()


def test_close_resumes_and_kills_a_paused_server(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendonly=False)
    server.start()
    pid = server.pid
    assert pid is not None
    server.pause()
    server.close()
    assert not server.is_running and server.pid is None
    assert _gone(pid)
    assert server not in rs._LIVE


def test_own_data_dir_is_created_and_removed() -> None:
    with RedisServer(appendonly=False) as server:
        data_dir = server.data_dir
        assert (data_dir / "redis.log").exists()
    assert not data_dir.exists()


def test_run_id_changes_across_restart(own_redis: RedisServer) -> None:
    before = own_redis.run_id()
    own_redis.restart()
    after = own_redis.run_id()
    assert len(before) == 40 and before != after


def test_password(tmp_path: Path) -> None:
    with RedisServer(tmp_path, appendonly=False, password="s3cret") as server:
        with server.client() as conn:
            assert conn.ping()
        with server.client(password=None) as anon, pytest.raises(redis.AuthenticationError):
            anon.ping()


def test_auto_port_collision_is_retried(
    tmp_path: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = iter([busy_port, rs.free_port()])
    monkeypatch.setattr(rs, "free_port", lambda: next(ports))
    with RedisServer(tmp_path, appendonly=False) as server:
        assert server.port != busy_port
        with server.client() as conn:
            assert conn.ping()
        assert "Address already in use" in (tmp_path / "redis.log").read_text()


def test_explicit_busy_port_fails_with_log(tmp_path: Path, busy_port: int) -> None:
    server = RedisServer(tmp_path, port=busy_port, appendonly=False)
    with pytest.raises(RuntimeError, match="Address already in use"):
        server.start()
    assert not server.is_running
    server.close()


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(rs, "bundled_server", lambda: None)
    monkeypatch.delenv("JOBD_REDIS_SERVER", raising=False)
    with pytest.raises(RuntimeError, match="apt-get install redis-server"):
        rs.find_redis_server()


def test_bundled_binary_when_none_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-server on PATH, the valkey-server of the `test` extra runs the suite."""
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(rs, "bundled_server", lambda: "/opt/valkey-server")
    monkeypatch.delenv("JOBD_REDIS_SERVER", raising=False)
    assert rs.find_redis_server() == "/opt/valkey-server"


def test_binary_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which("redis-server") or rs.bundled_server()
    assert real is not None
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setenv("JOBD_REDIS_SERVER", real)
    assert rs.find_redis_server() == real


def test_wait_until_returns_when_true() -> None:
    calls = iter([False, False, True])
    wait_until(lambda: next(calls), timeout=5, interval=0.001)


def test_wait_until_raises_on_timeout_with_message() -> None:
    with pytest.raises(AssertionError, match="the moon turned blue"):
        wait_until(lambda: False, timeout=0.05, message="the moon turned blue")


async def test_async_wait_until_accepts_awaitables() -> None:
    calls = iter([False, True])

    async def check() -> bool:
        return next(calls)

    await async_wait_until(check, timeout=5, interval=0.001)
    await async_wait_until(lambda: True)
    with pytest.raises(AssertionError, match="never"):
        await async_wait_until(lambda: False, timeout=0.05, message="never")
