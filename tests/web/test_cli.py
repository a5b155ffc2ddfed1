"""`jobd web` as an operator runs it: a real process serving a real Redis, its address and its
credentials from the command line and the environment."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.daemon import REPO_ROOT, Daemon
from tests.system.conftest import MakeDaemon


def start_web(make_daemon: MakeDaemon, config: Path, *args: str, env: dict[str, str]) -> Daemon:
    command = [sys.executable, "-m", "jobd", "web", "--config", str(config), *args]
    return make_daemon(None, command=command, env=env).start()


def address(server: Daemon) -> str:
    server.wait_for_log("Uvicorn running on")
    match = re.search(r"Uvicorn running on http://[^:]+:(\d+)", server.log_text())
    assert match, server.log_text()
    return f"http://127.0.0.1:{match[1]}"


def stop(server: Daemon) -> None:
    server.terminate()
    assert server.wait_exit() in (0, -signal.SIGTERM), server.log_text()


def test_it_refuses_to_listen_beyond_loopback_without_a_password(web_config: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobd", "web", "--config", str(web_config), "--listen", "0.0.0.0:0"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert result.returncode == 78, result.stderr
    assert "JOBD_WEB_PASSWORD" in result.stderr and "not loopback" in result.stderr
    assert "Traceback" not in result.stderr


def test_with_a_password_every_request_needs_it(make_daemon: MakeDaemon, web_config: Path) -> None:
    env = {"JOBD_WEB_PASSWORD": "correct-horse", "JOBD_WEB_USER": "ops"}
    server = start_web(make_daemon, web_config, "--listen", "0.0.0.0:0", env=env)
    url = address(server)
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/").status_code == 401
        assert http.get("/", auth=("admin", "correct-horse")).status_code == 401
        page = http.get("/", auth=("ops", "correct-horse"))
        assert page.status_code == 200 and "Queues" in page.text
    stop(server)
    assert "correct-horse" not in server.log_text()
    assert "basic auth as 'ops'" in server.log_text()


def test_loopback_by_default_and_read_only(make_daemon: MakeDaemon, web_config: Path) -> None:
    server = start_web(make_daemon, web_config, "--listen", "127.0.0.1:0", "--read-only", env={})
    url = address(server)
    assert url.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=url, timeout=10) as http:
        page = http.get("/dead")
        assert page.status_code == 200 and "read-only" in page.text
        token = http.cookies["jobd_csrf"]
        refused = http.post(
            "/actions/dead", data={"csrf": token, "action": "purge", "queue": "default", "all": "1"}
        )
        assert refused.status_code == 403
    stop(server)


def test_help_and_a_missing_extra() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "jobd", "web", "--help"], capture_output=True, text=True,
        cwd=REPO_ROOT, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "127.0.0.1:9181" in help_text and "JOBD_WEB_PASSWORD" in help_text
    assert "--read-only" in help_text
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "from jobd.cli.web import serve\nfrom jobd.config.settings import Settings\n"
        "from jobd.errors import ConfigError\n"
        "try:\n    serve(Settings(), listen=None, read_only=False)\n"
        "except ConfigError as error:\n    print(error)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60
    ).stdout
    assert "pip install 'jobd[web]'" in output
