"""One cached virtual environment per peer library under bench/.venvs/<peer>.

Each peer is installed with pinned versions (the latest on PyPI when the benchmark was written)
plus hiredis, because jobd's own environment has hiredis and redis-py picks it up automatically:
every library then parses Redis replies the same way. jobd itself runs from `sys.executable`.
A venv is rebuilt only when its pinned requirement list changes (stamped in `.bench-requirements`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH_ROOT = Path(__file__).resolve().parent
VENV_ROOT = BENCH_ROOT / ".venvs"
STAMP = ".bench-requirements"

HIREDIS = "hiredis==3.5.0"

PEER_REQUIREMENTS: dict[str, list[str]] = {
    "arq": ["arq==0.28.0", HIREDIS],
    # saq imports typing_extensions without declaring it
    "saq": ["saq[redis]==0.26.4", "typing_extensions==4.16.0", HIREDIS],
    "taskiq": ["taskiq==0.13.0", "taskiq-redis==1.2.4", HIREDIS],
    "dramatiq": ["dramatiq[redis]==2.2.1", HIREDIS],
}

# the distribution whose version the report shows for each library
VERSION_OF: dict[str, list[str]] = {
    "jobd": ["jobd", "redis", "hiredis", "uvloop"],
    "arq": ["arq", "redis", "hiredis"],
    "saq": ["saq", "redis", "hiredis"],
    "taskiq": ["taskiq", "taskiq-redis", "redis", "hiredis"],
    "dramatiq": ["dramatiq", "redis", "hiredis"],
}


def python_for(peer: str) -> str:
    """The interpreter that runs `peer`'s adapter and worker."""
    if peer == "jobd":
        return sys.executable
    return str(VENV_ROOT / peer / "bin" / "python")


def byte_compile(python: str, trees: list[Path], log: Path, exclude: str | None = None) -> None:
    """Byte-compile `trees` with `python`, as pip does when it installs a package.

    Every library's worker must load its code from .pyc files, or it compiles its modules again at
    each start: where PYTHONDONTWRITEBYTECODE is set (this machine sets it) nothing else writes
    them. That cost arq 0.17 s of W2's startup and 6 MiB of peak RSS in a run whose peer venvs had
    lost their __pycache__ directories. jobd is an editable install, whose sources pip never
    compiles; the benchmark's adapters, which every worker imports, are compiled the same way.
    Files that do not compile (some packages ship templates as .py) are skipped, as pip skips
    them. Quick when everything is compiled already."""
    skip = ["-x", exclude] if exclude else []
    with log.open("a") as out:
        subprocess.run(
            [python, "-m", "compileall", "-q", *skip, *map(str, trees)],
            stdout=out, stderr=out, check=False,
        )  # fmt: skip


def ensure_venv(peer: str, log: Path) -> str:
    """Create (or reuse) the peer's venv and byte-compile it; returns its python. Pip output goes
    to `log`. jobd runs from this repository's environment: its sources and the adapters are
    byte-compiled instead."""
    if peer == "jobd":
        # not bench/.venvs (each peer's own python compiles its venv) nor bench/.logs
        hidden = r"[/\\]bench[/\\]\."
        byte_compile(sys.executable, [BENCH_ROOT.parent / "jobd", BENCH_ROOT], log, hidden)
        return sys.executable
    requirements = PEER_REQUIREMENTS[peer]
    venv = VENV_ROOT / peer
    stamp = venv / STAMP
    wanted = "\n".join(requirements)
    if not (stamp.is_file() and stamp.read_text() == wanted and Path(python_for(peer)).is_file()):
        with log.open("a") as out:
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", str(venv)],
                check=True, stdout=out, stderr=out,
            )  # fmt: skip
            pip = [python_for(peer), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
            subprocess.run([*pip, *requirements], check=True, stdout=out, stderr=out)
        stamp.write_text(wanted)
    byte_compile(python_for(peer), [venv / "lib"], log)
    return python_for(peer)


def versions(peer: str) -> dict[str, str]:
    """Installed versions of the distributions that matter for `peer` (read inside its venv)."""
    code = (
        "import json, sys\n"
        "from importlib.metadata import version, PackageNotFoundError\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        out[name] = version(name)\n"
        "    except PackageNotFoundError:\n"
        "        out[name] = 'absent'\n"
        "print(json.dumps(out))\n"
    )
    import json

    reply = subprocess.run(
        [python_for(peer), "-c", code, *VERSION_OF[peer]],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, str] = json.loads(reply.stdout)
    return result
