"""Medians with min-max, the Markdown tables, and the files under bench/results/."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Metric:
    label: str
    workload: str
    key: str
    unit: str
    higher_is_better: bool
    ratio: bool = True  # in the jobd ÷ peer table


METRICS = [
    Metric("W1 enqueue, one awaited call at a time", "W1", "jobs_per_s", "jobs/s", True),
    Metric("W1b bulk enqueue (batch API)", "W1b", "jobs_per_s", "jobs/s", True),
    Metric("W1c concurrent producers, 200 enqueues in flight", "W1c", "jobs_per_s", "jobs/s", True),
    Metric("W2 drain, spawn → last job done", "W2", "jobs_per_s", "jobs/s", True),
    Metric("W2 startup, spawn → first job done", "W2", "startup_s", "s", False),
    Metric("W2 steady rate, 10 % → 90 % done", "W2", "steady_jobs_per_s", "jobs/s", True),
    Metric("W3 latency p50", "W3", "p50_ms", "ms", False),
    Metric("W3 latency p90", "W3", "p90_ms", "ms", False),
    Metric("W3 latency p99", "W3", "p99_ms", "ms", False),
    Metric("W3 latency max", "W3", "max_ms", "ms", False),
    Metric("W4 peak RSS of the worker (during W2)", "W2", "peak_rss_mib", "MiB", False),
    Metric("W5 10 ms jobs, first → last done", "W5", "after_first_jobs_per_s", "jobs/s", True),
    Metric("W7 1 s jobs, first start → last done", "W7", "busy_jobs_per_s", "jobs/s", True),
    Metric("W7 share of the ideal (concurrency / 1 s)", "W7", "of_ideal", "", True, False),
    Metric("W7 spawn → last done", "W7", "jobs_per_s", "jobs/s", True),
    Metric("W7 peak RSS of the worker", "W7", "peak_rss_mib", "MiB", False),
    Metric("W7L starts per full second, limit 1000/s", "W7L", "start_rate_per_s", "", True, False),
    Metric("W7L most starts in any 1 s (≤ 1,000)", "W7L", "most_starts_in_1s", "", False, False),
    Metric("W7L peak RSS of the worker", "W7L", "peak_rss_mib", "MiB", False, False),
    Metric("W6 2 workers, spawn → last", "W6x2", "jobs_per_s", "jobs/s", True),
    Metric("W6 2 workers, steady", "W6x2", "steady_jobs_per_s", "jobs/s", True),
    Metric("W6 4 workers, spawn → last", "W6x4", "jobs_per_s", "jobs/s", True),
    Metric("W6 4 workers, steady", "W6x4", "steady_jobs_per_s", "jobs/s", True),
    Metric("Redis commands / job, enqueue (W1)", "W1", "cmds_per_job", "", False, False),
    Metric("Redis round trips / job, enqueue (W1)", "W1", "round_trips_per_job", "", False, False),
    Metric("Redis commands / job, bulk (W1b)", "W1b", "cmds_per_job", "", False, False),
    Metric("Redis round trips / job, bulk (W1b)", "W1b", "round_trips_per_job", "", False, False),
    Metric("Redis CPU µs / job, enqueue (W1)", "W1", "redis_cpu_us_per_job", "µs", False, False),
    Metric("Redis CPU µs / job, concurrent W1c", "W1c", "redis_cpu_us_per_job", "µs", False, False),
    Metric("Redis round trips / job, W1c", "W1c", "round_trips_per_job", "", False, False),
    Metric("Redis commands / job, worker (W2)", "W2", "cmds_per_job", "", False, False),
    Metric("Redis round trips / job, worker (W2)", "W2", "round_trips_per_job", "", False, False),
]


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max of every numeric field over the repetitions that produced one."""
    measured = [run for run in runs if "na" not in run]
    if not measured:
        return {"na": runs[0]["na"] if runs else "not run"}
    summary: dict[str, Any] = {"reps": len(measured)}
    for key, value in measured[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [float(run[key]) for run in measured if isinstance(run.get(key), int | float)]
            values = [v for v in values if not math.isnan(v)]
            if values:
                summary[key] = {"median": statistics.median(values), "min": min(values),
                                "max": max(values)}  # fmt: skip
    return summary


def number(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio_text(value: float) -> str:
    if value >= 10:
        return f"{value:.1f}x"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.3f}x"


def cell(summary: dict[str, Any] | None, key: str) -> str:
    if summary is None:
        return "—"
    if "na" in summary:
        return "n/a"
    stat = summary.get(key)
    if stat is None:
        return "—"
    text = number(stat["median"])
    if summary["reps"] > 1:
        text += f" ({number(stat['min'])}-{number(stat['max'])})"
    return text


def median_of(summaries: dict[str, dict[str, Any]], peer: str, key: str) -> float | None:
    summary = summaries.get(peer)
    if not summary or "na" in summary or key not in summary:
        return None
    value: float = summary[key]["median"]
    return value


def best_peer(
    summaries: dict[str, dict[str, Any]], metric: Metric, peers: list[str]
) -> tuple[str, float] | None:
    values = [(p, v) for p in peers if p != "jobd" and (v := median_of(summaries, p, metric.key))]
    if not values:
        return None
    pick = max if metric.higher_is_better else min
    return pick(values, key=lambda pair: pair[1])


def main_table(summary: dict[str, dict[str, dict[str, Any]]], peers: list[str]) -> list[str]:
    head = ["workload", "unit", *peers, "jobd ÷ best peer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in METRICS:
        per_peer = summary.get(metric.workload, {})
        if not per_peer:
            continue
        cells = [cell(per_peer.get(peer), metric.key) for peer in peers]
        ratio = ""
        jobd = median_of(per_peer, "jobd", metric.key)
        best = best_peer(per_peer, metric, peers)
        if metric.ratio and jobd is not None and best is not None:
            ratio = f"{ratio_text(jobd / best[1])} ({best[0]})"
        lines.append("| " + " | ".join([metric.label, metric.unit, *cells, ratio]) + " |")
    return lines


def ratio_table(summary: dict[str, dict[str, dict[str, Any]]], peers: list[str]) -> list[str]:
    others = [peer for peer in peers if peer != "jobd"]
    head = ["jobd ÷ peer (medians)", *others]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in METRICS:
        per_peer = summary.get(metric.workload, {})
        jobd = median_of(per_peer, "jobd", metric.key)
        if not metric.ratio or jobd is None:
            continue
        cells = []
        for peer in others:
            value = median_of(per_peer, peer, metric.key)
            cells.append(ratio_text(jobd / value) if value else "—")
        if all(text == "—" for text in cells):
            continue
        better = "higher" if metric.higher_is_better else "lower"
        lines.append("| " + " | ".join([f"{metric.label} ({better} is better)", *cells]) + " |")
    return lines


def not_measured(summary: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    return [
        f"- {workload} {peer}: {result['na']}"
        for workload, per_peer in summary.items()
        for peer, result in per_peer.items()
        if "na" in result
    ]


def duplicates(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    """Runs in which some job ran more than once (the counter passed the number of jobs)."""
    return [
        f"- {workload} {peer} repetition {rep}: {run['extra_runs']} extra job runs"
        for workload, per_peer in runs.items()
        for peer, results in per_peer.items()
        for rep, run in enumerate(results, 1)
        if run.get("extra_runs")
    ]


def markdown(document: dict[str, Any]) -> str:
    peers: list[str] = document["settings"]["peers"]
    summary = document["summary"]
    versions = "; ".join(
        f"{peer} "
        + ", ".join(f"{name} {version}" for name, version in document["versions"][peer].items())
        for peer in peers
    )
    s = document["settings"]
    parts = [
        f"# jobd benchmark{' (quick mode: smoke figures only)' if s['quick'] else ''}",
        "",
        f"- Date: {document['date']}",
        f"- Machine: {document['machine_line']}",
        f"- redis-server {document['redis_server']} (no persistence); jobd commit "
        f"{document['machine']['jobd_commit']}",
        f"- Versions: {versions}",
        f"- Settings: {s['jobs']:,} jobs (W1, W1b, W1c, W2, W6), W3 {s['latency_jobs']:,} jobs at "
        f"{s['rate']:.0f}/s, W5 {s['sleep_jobs']:,} jobs, concurrency {s['concurrency']}, "
        f"bulk batches of {s['batch']:,}; W7 {s.get('llm_jobs', 0):,} jobs of 1 s at "
        f"concurrency {s.get('llm_concurrency', 0):,}; {s['reps']} interleaved repetition(s), "
        "median (min-max)",
        "",
        *main_table(summary, peers),
        "",
        *ratio_table(summary, peers),
        "",
    ]
    missing = not_measured(summary)
    if missing:
        parts += ["Not measured (n/a):", "", *missing, ""]
    repeated = duplicates(document["runs"])
    if repeated:
        parts += ["Jobs run more than once:", "", *repeated, ""]
    parts += ["Knobs changed from each library's defaults:", ""]
    parts += [f"- {peer}: {document['knobs'][peer]}" for peer in peers]
    parts += [f"- all: {document['knobs']['all']}"]
    parts += ["", "Method: see docs/benchmark.md and bench/__main__.py.", ""]
    return "\n".join(parts)


def write(document: dict[str, Any], stem: str, stamped: str | None) -> list[Path]:
    """Write `<stem>.md` and `<stem>.json` (and timestamped copies) atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = {"md": markdown(document), "json": json.dumps(document, indent=2, sort_keys=False)}
    written = []
    for name in [stem, stamped] if stamped else [stem]:
        for ext, content in text.items():
            path = RESULTS / f"{name}.{ext}"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(content + "\n")
            tmp.replace(path)
            written.append(path)
    return written
