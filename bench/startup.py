"""`python -m bench.startup [--reps 10] [--only jobd,jobd-base,arq,dramatiq] [--baseline REV]
[--uncompiled]`: how long a worker takes from its spawn to the start of the first job, for jobd and
its peers side by side, and where jobd's time goes.

Each run queues one job first, then spawns one worker through the library's own CLI and takes
the moment the job records as its first statement less the moment of the spawn (both
`time.time()` on this machine; bench.adapters.startup). The variants run interleaved, rep by
rep, on one pair of private redis-servers:

  jobd          this tree in this environment (the test extra: redis-py then imports the
                OpenTelemetry SDK, which it loads wherever it is installed)
  jobd-base     this tree in bench/.venvs/jobd-base: `pip install -e .` only (the base
                dependencies, at the versions of this environment)
  jobd@REV      with --baseline REV: that commit (a git worktree), in both environments
  jobd-nopyc    with --uncompiled: a copy of this tree whose jobd sources are not byte-compiled
                (an editable install where PYTHONDONTWRITEBYTECODE is set compiles every module
                at every start)
  arq, dramatiq peers, from their venvs (bench/venvs.py), with the workers bench/adapters define

Then, for each jobd variant: `python -c pass` (the interpreter alone), a run under
`-X importtime` (import time per package), and a run under bench.startup_probe (the phases on the
way to the first claim). Writes bench/results/startup-latest.{md,json}; logs in bench/.logs/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine, venvs
from bench import startup_report as report
from bench.redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LOGS = ROOT / "bench" / ".logs"
BASE_VENV = venvs.VENV_ROOT / "jobd-base"
PEERS = ("arq", "dramatiq", "saq", "taskiq")
RESULT_PREFIX = "BENCH-RESULT "
SKIP = shutil.ignore_patterns("__pycache__", ".venvs", ".logs", "results")


@dataclass(frozen=True)
class Variant:
    label: str
    peer: str
    python: str
    tree: Path
    env: tuple[tuple[str, str], ...] = ()

    @property
    def is_jobd(self) -> bool:
        return self.peer == "jobd"


def base_venv(log: Path) -> str:
    """bench/.venvs/jobd-base: jobd's base dependencies only, pinned to this environment's
    versions; rebuilt when pyproject's dependency list changes."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = "\n".join(dependencies)
    python = BASE_VENV / "bin" / "python"
    stamp = BASE_VENV / venvs.STAMP
    if not (stamp.is_file() and stamp.read_text() == wanted and python.is_file()):
        pins = subprocess.run(
            [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        constraints = BASE_VENV.with_suffix(".constraints.txt")
        with log.open("a") as out:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(BASE_VENV)], check=True,
                           stdout=out, stderr=out)  # fmt: skip
            constraints.write_text(pins)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                 "-c", str(constraints), "-e", str(ROOT)],
                check=True, stdout=out, stderr=out,
            )  # fmt: skip
        constraints.unlink(missing_ok=True)
        stamp.write_text(wanted)
    venvs.byte_compile(str(python), [BASE_VENV / "lib"], log)
    return str(python)


def worktree(revision: str, log: Path) -> Path:
    tree = Path(tempfile.mkdtemp(prefix="jobd-startup-baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=ROOT,
                   check=True, capture_output=True)  # fmt: skip
    # the measuring tools are this tree's (the commit may predate them); the jobd measured is its own
    shutil.rmtree(tree / "bench")
    shutil.copytree(ROOT / "bench", tree / "bench", ignore=SKIP)
    venvs.byte_compile(sys.executable, [tree / "jobd", tree / "bench"], log)
    return tree


def uncompiled_copy(source: Path, log: Path) -> Path:
    """The jobd of `source` and this tree's bench in a temporary directory; only bench is
    byte-compiled."""
    tree = Path(tempfile.mkdtemp(prefix="jobd-startup-nopyc-"))
    shutil.copytree(source / "jobd", tree / "jobd", ignore=SKIP)
    shutil.copytree(ROOT / "bench", tree / "bench", ignore=SKIP)
    venvs.byte_compile(sys.executable, [tree / "bench"], log)
    return tree


def variants(args: argparse.Namespace, log: Path, trees: list[Path]) -> list[Variant]:
    chosen: list[Variant] = []
    for name in args.only:
        if name == "jobd":
            venvs.ensure_venv("jobd", log)
            chosen.append(Variant("jobd", "jobd", sys.executable, ROOT))
        elif name == "jobd-base":
            chosen.append(Variant("jobd-base", "jobd", base_venv(log), ROOT))
        else:
            chosen.append(Variant(name, name, venvs.ensure_venv(name, log), ROOT))
    nopyc = (("PYTHONDONTWRITEBYTECODE", "1"),)
    if args.baseline:
        tree = worktree(args.baseline, log)
        trees.append(tree)
        chosen.insert(0, Variant(f"jobd@{args.baseline}", "jobd", sys.executable, tree))
        if "jobd-base" in args.only:
            chosen.insert(1, Variant(f"jobd-base@{args.baseline}", "jobd", base_venv(log), tree))
        if args.uncompiled:
            copy = uncompiled_copy(tree, log)
            trees.append(copy)
            chosen.append(
                Variant(f"jobd-nopyc@{args.baseline}", "jobd", sys.executable, copy, nopyc)
            )
    if args.uncompiled:
        copy = uncompiled_copy(ROOT, log)
        trees.append(copy)
        chosen.append(Variant("jobd-nopyc", "jobd", sys.executable, copy, nopyc))
    return chosen


def drive(variant: Variant, servers: tuple[str, str], logdir: Path, tag: str, *extra: str,
          queued: int = 1) -> dict[str, Any]:  # fmt: skip
    """One run of bench.adapters.startup for `variant`; its result dict."""
    command = [
        variant.python, "-m", "bench.adapters.startup", variant.peer, "--redis", servers[0],
        "--counter", servers[1], "--logdir", str(logdir), "--tag", tag, "--queued", str(queued),
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(variant.tree), **dict(variant.env)}
    reply = subprocess.run(command, cwd=variant.tree, env=env, capture_output=True, text=True,
                           timeout=180, check=False)  # fmt: skip
    with (logdir / "drivers.log").open("a") as out:
        out.write(f"== {variant.label} {tag}\n{reply.stderr}")
    for line in reply.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_PREFIX))
            return result
    return {"na": f"no result (exit {reply.returncode}); see {logdir / 'drivers.log'}"}


def interpreter_seconds(variant: Variant) -> float:
    began = time.perf_counter()
    subprocess.run([variant.python, "-c", "pass"], cwd=variant.tree, check=True)
    return time.perf_counter() - began


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.startup", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--reps", type=int, default=10, help="timed runs of each variant")
    parser.add_argument("--breakdown-reps", type=int, default=5,
                        help="runs under -X importtime and under the probe (jobd variants)")  # fmt: skip
    parser.add_argument("--only", default="jobd,jobd-base,arq,dramatiq",
                        help=f"from jobd, jobd-base, {', '.join(PEERS)}")  # fmt: skip
    parser.add_argument("--queued", type=int, default=1,
                        help="jobs queued before each spawn, the measured one first (default 1)")  # fmt: skip
    parser.add_argument("--baseline", metavar="REV", help="also this commit of jobd (worktree)")
    parser.add_argument("--uncompiled", action="store_true",
                        help="also this tree with jobd's sources not byte-compiled")  # fmt: skip
    args = parser.parse_args()
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - {"jobd", "jobd-base", *PEERS}
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    return args


def _stop(number: int, frame: object) -> None:
    raise SystemExit(128 + number)  # the servers, worktrees and copies are removed on the way out


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # also when started in the background (SIGINT ignored)
    now = datetime.now(UTC)
    logdir = LOGS / f"startup-{now:%Y%m%d-%H%M%S}"
    logdir.mkdir(parents=True, exist_ok=True)
    trees: list[Path] = []
    try:
        chosen = variants(args, logdir / "setup.log", trees)
        document = measure(args, chosen, logdir)
    finally:
        for tree in trees:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           check=False, capture_output=True)  # fmt: skip
            shutil.rmtree(tree, ignore_errors=True)
    info = machine.describe()
    document.update(date=now.strftime("%Y-%m-%d %H:%M UTC"), machine=machine.one_line(info))
    text = markdown(args, document)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup-latest.md").write_text(text)
    (RESULTS / "startup-latest.json").write_text(
        json.dumps(report.slim(document), indent=2, default=str) + "\n"
    )
    print(text)
    print(f"logs: {logdir}")


def measure(args: argparse.Namespace, chosen: list[Variant], logdir: Path) -> dict[str, Any]:
    timed: dict[str, list[float]] = {variant.label: [] for variant in chosen}
    cpu: dict[str, list[float]] = {variant.label: [] for variant in chosen}
    failures: dict[str, str] = {}
    jobd = [variant for variant in chosen if variant.is_jobd]
    interpreter: dict[str, list[float]] = {variant.label: [] for variant in jobd}
    imports: dict[str, list[list[report.Imported]]] = {variant.label: [] for variant in jobd}
    marks: dict[str, list[dict[str, tuple[float, float | None]]]] = {v.label: [] for v in jobd}
    cuts: dict[str, list[dict[str, float]]] = {variant.label: [] for variant in jobd}
    with RedisServer() as main_server, RedisServer() as counter:
        servers = (main_server.url, counter.url)
        for rep in range(args.reps):
            for variant in chosen:
                result = drive(variant, servers, logdir, f"timed-{rep}", queued=args.queued)
                if "na" in result:
                    failures[variant.label] = result["na"]
                else:
                    timed[variant.label].append(result["seconds"])
                    cpu[variant.label].append(result["cpu_seconds"])
            print(f"rep {rep + 1}/{args.reps}: " + ", ".join(
                f"{label} {values[-1] * 1000:.0f} ms" for label, values in timed.items() if values
            ), flush=True)  # fmt: skip
        for rep in range(args.breakdown_reps):
            for variant in jobd:
                interpreter[variant.label].append(interpreter_seconds(variant))
                tag = f"{variant.label.replace('@', '-')}-importtime-{rep}"
                result = drive(variant, servers, logdir, tag, "--importtime")
                log = logdir / f"jobd-{tag}.log"
                if "na" not in result and log.is_file():
                    imports[variant.label].append(report.parse_importtime(log.read_text()))
                file = logdir / f"marks-{variant.label.replace('@', '-')}-{rep}.tsv"
                result = drive(variant, servers, logdir, f"probe-{rep}", "--probe", str(file))
                if "na" not in result and file.is_file():
                    run = report.read_marks(file, result["spawned"])
                    marks[variant.label].append(run)
                    cuts[variant.label].append(report.segments(run, result["seconds"] * 1000))
        redis_version = main_server.version()
    return {
        "redis_server": redis_version,
        "variants": {v.label: {"python": v.python, "tree": str(v.tree)} for v in chosen},
        "timed": report.summary(timed),
        "cpu": report.summary(cpu),
        "failures": failures,
        "interpreter_s": {label: values for label, values in interpreter.items()},
        "imports_ms": {
            label: [report.by_package(run) for run in runs] for label, runs in imports.items()
        },
        "modules_imported": {label: [len(run) for run in runs] for label, runs in imports.items()},
        "phases_ms": marks,
        "segments_ms": cuts,
        "heaviest": {label: report.heaviest(runs) for label, runs in imports.items()},
    }


def markdown(args: argparse.Namespace, document: dict[str, Any]) -> str:
    timed = {label: entry["seconds"] for label, entry in document["timed"].items()}
    cpu = {label: entry["seconds"] for label, entry in document["cpu"].items()}
    reference = next((name for name in ("arq", "dramatiq") if timed.get(name)), None)
    command = "python -m bench.startup" + "".join(
        f" {flag}" for flag in (
            f"--reps {args.reps}", f"--only {','.join(args.only)}",
            f"--queued {args.queued}" if args.queued > 1 else "",
            f"--baseline {args.baseline}" if args.baseline else "",
            "--uncompiled" if args.uncompiled else "",
        ) if flag
    )  # fmt: skip
    lines = [
        f"# Startup: spawn -> first job started, {document['date']}", "",
        f"`{command}` on {document['machine']}; redis-server {document['redis_server']}. "
        "Variants interleaved run by run; the machine is shared (read ratios, not absolutes).", "",
        "Wall time from the spawn to the job's first statement:", "",
        *report.timings_table(timed, reference), "",
        "CPU time the worker's processes had used when the job's stamp arrived (a few ms after "
        "the job started; /proc/PID/schedstat), which a busy machine disturbs less:", "",
        *report.timings_table(cpu, reference), "",
    ]  # fmt: skip
    for label, reason in document["failures"].items():
        lines.append(f"- {label}: a run failed: {reason}")
    interpreter = document["interpreter_s"]
    if any(interpreter.values()):
        lines += ["", "## jobd's startup, part by part", "",
                  "`python -c pass` (interpreter and site, this environment): " + ", ".join(
                      f"{label} {statistics.median(values) * 1000:.0f} ms"
                      for label, values in interpreter.items() if values
                  ) + ".", "",
                  "The runs under bench.startup_probe cut into their serial parts (medians; "
                  "the probe adds its own imports to the first parts):", "",
                  *report.segments_table(document["segments_ms"]), "",
                  "The probe's phases (ms after the spawn, medians; a phase's length includes "
                  "whatever it imports on first use):", "",
                  *report.phases_table(document["phases_ms"]), "",
                  "Imports (`-X importtime` of the whole worker run, medians):", "",
                  *report.imports_table(document["imports_ms"], document["modules_imported"]),
                  ""]  # fmt: skip
        for label, chain in document["heaviest"].items():
            lines.append(f"- heaviest imports of {label} (cumulative): {'; '.join(chain)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
