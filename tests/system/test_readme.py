"""The README's first command on a fresh machine: in a new virtual environment, the command line
`pip install -e '.[embedded]' && jobd --config config/jobs.toml` (read from the README) installs
jobd and runs a worker with its embedded Redis, and every command of the "Try it" walk-through
works against it. Slow: pip installs jobd's dependencies (from pip's cache when it has them)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import REPO_ROOT, Daemon

INSTALL_TIMEOUT = 600.0
GUARD = 60.0
"""Deadline of each command and wait: a hang guard, not a timing assertion."""
PROJECT_FILES = ("pyproject.toml", "README.md", "jobd", "config", "examples")
EXAMPLE_PORT = 9100
"""`http.listen` of config/jobs.toml."""


def code_blocks(text: str, after: str = "") -> list[list[str]]:
    """The lines of each ```sh block of `text` after the first line that is `after`."""
    if after:
        text = text[text.index(f"\n{after}\n") :]
    return [block.splitlines() for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL)]


def fresh_checkout(target: Path) -> Path:
    """The project's files, without what earlier runs left (.jobd/, caches, build metadata)."""
    ignore = shutil.ignore_patterns(".jobd", "__pycache__", "*.egg-info")
    target.mkdir()
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    return target


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 300)
def test_readme_commands_work_in_a_fresh_virtual_environment(tmp_path: Path) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    first_line = code_blocks(readme)[0][0]
    words = shlex.split(first_line, comments=True)
    separator = words.index("&&")
    install, run = shlex.join(words[:separator]), words[separator + 1 :]
    checkout = fresh_checkout(tmp_path / "jobd")
    if not port_is_free(EXAMPLE_PORT):  # not the README's doing: some other server has the port
        config = checkout / "config" / "jobs.toml"
        config.write_text(
            config.read_text().replace(f'"127.0.0.1:{EXAMPLE_PORT}"', '"127.0.0.1:0"')
        )

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=GUARD)
    hidden = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "JOBD_CONFIG", "REDIS_URL")
    env = {key: value for key, value in os.environ.items() if key not in hidden}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(venv)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    installed = subprocess.run(
        ["bash", "-c", install], cwd=checkout, env=env, capture_output=True, text=True,
        timeout=INSTALL_TIMEOUT, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    worker = Daemon(
        None,
        command=run,
        cwd=checkout,
        env={**env, "PYTHONPATH": ""},
        log_dir=tmp_path,
    )
    with worker:
        worker.wait_running(GUARD)
        assert f"embedded Redis at unix://{checkout}/config/.jobd/redis.sock" in worker.log_text()
        outputs = walk_through(code_blocks(readme, after="## Try it")[0], checkout, env)
        worker.terminate()
        assert worker.wait_exit(GUARD) == 0, worker.log_text()
    assert "embedded Redis stopped" in worker.log_text()
    assert not (checkout / "config" / ".jobd" / "redis.json").exists()
    assert "resized to 640x480" in outputs["jobd enqueue resize_image"]
    assert "RuntimeError: try 2 failed on purpose" in outputs["jobd enqueue flaky"]
    assert "flaky" in outputs["jobd dead list"]
    assert "failed for good" in outputs["python examples/producer.py"]


def walk_through(lines: list[str], cwd: Path, env: dict[str, str]) -> dict[str, str]:
    """Run each command of the walk-through ("ID" is the id the first enqueue printed); returns
    the output of each by its first words ("jobd enqueue flaky", "jobd status"). Only the job
    meant to fail may exit 1."""
    env = dict(env)
    outputs: dict[str, str] = {}
    job_id = ""
    for line in lines:
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            env[name] = value
            continue
        words = [job_id if word == "ID" else word for word in words]
        done = subprocess.run(
            words, cwd=cwd, env=env, capture_output=True, text=True, timeout=GUARD, check=False
        )
        expected = 1 if "--max-tries" in words else 0
        assert done.returncode == expected, (line, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, (line, done.stderr)
        key = words[:3] if words[1] in ("enqueue", "dead") else words[:2]
        outputs[" ".join(key)] = done.stdout + done.stderr
        if not job_id and words[1:2] == ["enqueue"]:
            job_id = done.stdout.strip()
    return outputs
