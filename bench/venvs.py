"""One cached virtual environment per peer library under bench/.venvs/<peer>.

Each peer is installed with pinned versions (the latest on PyPI when the benchmark was written)
plus hiredis, because jobd's own environment has hiredis and redis-py picks it up automatically:
every library then parses Redis replies the same way. jobd itself runs from `sys.executable`.
A venv is rebuilt only when its pinned requirement list changes (stamped in `.bench-requirements`).
"""

from __future__ import annotations

import compileall
import re
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


def compile_sources() -> None:
    """Byte-compile jobd and the benchmark's adapters, which run from the repository's source tree.

    pip byte-compiles what it installs, so the peers' workers load their code from .pyc files. jobd
    is an editable install: where PYTHONDONTWRITEBYTECODE is set (this machine sets it), nothing
    would write its .pyc files, and each jobd worker would compile its modules again at startup,
    about 50 ms of W2's startup. The adapters are compiled for every library alike."""
    hidden = re.compile(r"[/\\]\.")  # bench/.venvs, bench/.logs
    for tree in (BENCH_ROOT.parent / "jobd", BENCH_ROOT):
        if not compileall.compile_dir(tree, quiet=1, rx=hidden):
            raise RuntimeError(f"could not byte-compile {tree}")


def ensure_venv(peer: str, log: Path) -> str:
    """Create (or reuse) the peer's venv; returns its python. Pip output goes to `log`. For jobd,
    which runs from this repository's environment, byte-compiles its sources instead."""
    if peer == "jobd":
        compile_sources()
        return sys.executable
    requirements = PEER_REQUIREMENTS[peer]
    venv = VENV_ROOT / peer
    stamp = venv / STAMP
    wanted = "\n".join(requirements)
    if stamp.is_file() and stamp.read_text() == wanted and Path(python_for(peer)).is_file():
        return python_for(peer)
    with log.open("a") as out:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(venv)], check=True, stdout=out, stderr=out
        )
        pip = [python_for(peer), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, *requirements], check=True, stdout=out, stderr=out)
    stamp.write_text(wanted)
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
