"""What bench.startup reads and writes: `-X importtime` logs, the probe's phase marks, and the
Markdown tables of the report."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Imported:
    """One line of `python -X importtime`: a module, its nesting, its own and cumulative µs."""

    name: str
    depth: int
    self_us: int
    cumulative_us: int


def parse_importtime(text: str) -> list[Imported]:
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        head, cumulative, raw = line.split("|", 2)
        name = raw.strip()
        depth = (len(raw) - len(raw.lstrip(" ")) - 1) // 2
        rows.append(Imported(name, depth, int(head.split(":")[1]), int(cumulative)))
    return rows


def by_package(rows: Iterable[Imported]) -> dict[str, float]:
    """Milliseconds of import per top-level package (each module's own time, summed)."""
    totals: dict[str, float] = defaultdict(float)
    for row in rows:
        totals[row.name.split(".")[0]] += row.self_us / 1000
    return dict(totals)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def read_marks(path: Path, spawned: float) -> dict[str, tuple[float, float | None]]:
    """phase -> (begin, end) in ms after the spawn, from the probe's file."""
    phases: dict[str, list[float | None]] = {}
    for line in path.read_text().splitlines():
        phase, event, moment = line.split("\t")
        slot = phases.setdefault(phase, [None, None])
        slot[0 if event == "begin" else 1] = (float(moment) - spawned) * 1000
    return {phase: (begin, end) for phase, (begin, end) in phases.items() if begin is not None}


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def timings_table(results: dict[str, list[float]], reference: str | None) -> list[str]:
    """Spawn -> first job, seconds per run of each variant: median, p90, min, max."""
    lines = [
        "| variant | runs | median | p90 | min | max |"
        + (f" median / {reference} |" if reference else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if reference else ""),
    ]
    base = statistics.median(results[reference]) if reference and results.get(reference) else None
    for label, values in results.items():
        if not values:
            lines.append(f"| {label} | 0 | n/a | | | |" + (" |" if reference else ""))
            continue
        median = statistics.median(values)
        row = (
            f"| {label} | {len(values)} | {median * 1000:,.0f} ms | "
            f"{percentile(values, 0.9) * 1000:,.0f} ms | {min(values) * 1000:,.0f} ms | "
            f"{max(values) * 1000:,.0f} ms |"
        )
        if base:
            row += f" {median / base:.2f}x |"
        lines.append(row)
    return lines


def phases_table(marks: dict[str, list[dict[str, tuple[float, float | None]]]]) -> list[str]:
    """The probe's phases of each jobd variant: median start and median length, in ms."""
    labels = list(marks)
    order: dict[str, float] = {}
    for runs in marks.values():
        for run in runs:
            for phase, (begin, _) in run.items():
                order[phase] = min(order.get(phase, begin), begin)
    lines = [
        "| phase | " + " | ".join(f"{label}: starts at | lasts" for label in labels) + " |",
        "|---|" + "---:|---:|" * len(labels),
    ]
    for phase in sorted(order, key=order.__getitem__):
        cells = []
        for label in labels:
            present = [run[phase] for run in marks[label] if phase in run]
            if not present:
                cells += ["", ""]
                continue
            begin = statistics.median(b for b, _ in present)
            lengths = [e - b for b, e in present if e is not None]
            cells += [ms(begin), ms(statistics.median(lengths)) if lengths else "-"]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    return lines


def imports_table(
    imports: dict[str, list[dict[str, float]]], modules: dict[str, list[int]], top: int = 14
) -> list[str]:
    """Import time per top-level package (median of the runs; `by_package` of each run) of each
    jobd variant, and how many modules each imported."""
    labels = list(imports)
    medians: dict[str, dict[str, float]] = {}
    for label, packages in imports.items():
        names = {name for totals in packages for name in totals}
        medians[label] = {
            name: statistics.median(totals.get(name, 0.0) for totals in packages) for name in names
        }
    ranking: dict[str, float] = defaultdict(float)
    for values in medians.values():
        for name, value in values.items():
            ranking[name] = max(ranking[name], value)
    lines = [
        "| package (own time of its modules) | "
        + " | ".join(f"{label} ms" for label in labels)
        + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for name in sorted(ranking, key=ranking.__getitem__, reverse=True)[:top]:
        lines.append(
            f"| {name} | "
            + " | ".join(f"{medians[label].get(name, 0.0):.1f}" for label in labels)
            + " |"
        )
    total = " | ".join(f"**{sum(medians[label].values()):.0f}**" for label in labels)
    lines.append(f"| all imports | {total} |")
    counts = " | ".join(
        str(round(statistics.median(modules[label]))) if modules[label] else "-" for label in labels
    )
    lines.append(f"| modules imported | {counts} |")
    return lines


def heaviest(runs: Sequence[Sequence[Imported]], top: int = 12) -> list[str]:
    """The heaviest import chains started by jobd's own modules (cumulative µs, median)."""
    values: dict[str, list[int]] = defaultdict(list)
    for run in runs:
        for row in run:
            if not row.name.startswith(("jobd", "bench")):
                continue
            values[row.name].append(row.cumulative_us)
    ranked = sorted(values.items(), key=lambda item: statistics.median(item[1]), reverse=True)
    return [f"{name} {statistics.median(us) / 1000:.0f} ms" for name, us in ranked[:top]]


def summary(results: dict[str, list[float]]) -> dict[str, Any]:
    return {
        label: {
            "runs": len(values),
            "median_s": statistics.median(values) if values else None,
            "p90_s": percentile(values, 0.9) if values else None,
            "seconds": values,
        }
        for label, values in results.items()
    }


BOUNDARIES: tuple[tuple[str, str, str], ...] = (
    ("interpreter start, site, the probe's own imports", "probe", "begin"),
    ("import jobd and its CLI parser", "import jobd.cli.entry", "end"),
    ("parse the command line, set up logging", "import jobd.daemon", "begin"),
    (
        "import the worker (redis-py, prometheus-client, jobd's modules)",
        "import jobd.daemon",
        "end",
    ),
    ("read the configuration", "config load", "end"),
    ("uvloop, the event loop", "event loop running: serve", "begin"),
    ("import the job functions and hooks", "import job functions and hooks", "end"),
    ("gc: collect and freeze", "gc collect and freeze", "end"),
    ("metrics, probe server, Worker()", "Worker.run", "begin"),
    ("Redis: connect, pub/sub check", "subscribe check (connect)", "end"),
    ("Redis: first claim (and first heartbeat)", "first job handed to its task", "begin"),
)
"""The serial segments of a startup: each ends at a probe mark (phase, begin or end) and starts
where the one before ended; the last segment runs to the job's own stamp."""


def segments(run: dict[str, tuple[float, float | None]], total_ms: float) -> dict[str, float]:
    """One probe run cut into BOUNDARIES' segments (ms); they add up to `total_ms`."""
    cut: dict[str, float] = {}
    last = 0.0
    for label, phase, event in BOUNDARIES:
        begin, end = run.get(phase, (None, None))
        moment = begin if event == "begin" else end
        if moment is None:
            continue
        cut[label] = moment - last
        last = moment
    cut["the job's task starts"] = total_ms - last
    return cut


def segments_table(cuts: dict[str, list[dict[str, float]]]) -> list[str]:
    """Median of each segment per jobd variant, and the total."""
    labels = list(cuts)
    names = [label for label, _, _ in BOUNDARIES] + ["the job's task starts"]
    lines = [
        "| part (in order) | " + " | ".join(f"{label} ms" for label in labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for name in names:
        cells = []
        for label in labels:
            values = [run[name] for run in cuts[label] if name in run]
            cells.append(f"{statistics.median(values):.0f}" if values else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [
        f"**{statistics.median(sum(run.values()) for run in cuts[label]):.0f}**"
        if cuts[label]
        else "-"
        for label in labels
    ]
    lines.append("| spawn -> first job (these runs) | " + " | ".join(totals) + " |")
    return lines


def slim(document: dict[str, Any]) -> dict[str, Any]:
    """The document for the JSON file: medians of the breakdown runs instead of every run."""

    def median_of(runs: list[dict[str, float]], floor: float = 0.0) -> dict[str, float]:
        names = {name for run in runs for name in run}
        values = {n: statistics.median(run.get(n, 0.0) for run in runs) for n in names}
        return {
            n: round(v, 2) for n, v in sorted(values.items(), key=lambda i: -i[1]) if v >= floor
        }

    phases: dict[str, dict[str, list[float]]] = {}
    for label, runs in document["phases_ms"].items():
        found: dict[str, list[tuple[float, float | None]]] = defaultdict(list)
        for run in runs:
            for phase, span in run.items():
                found[phase].append(span)
        phases[label] = {
            phase: [
                round(statistics.median(b for b, _ in spans), 1),
                round(statistics.median([e - b for b, e in spans if e is not None] or [0.0]), 1),
            ]
            for phase, spans in found.items()
        }
    return {
        **document,
        "imports_ms": {
            label: median_of(runs, 0.5) for label, runs in document["imports_ms"].items()
        },
        "phases_ms": phases,
        "segments_ms": {label: median_of(runs) for label, runs in document["segments_ms"].items()},
    }
