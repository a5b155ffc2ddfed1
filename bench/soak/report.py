"""The soak's report: Markdown for people, JSON for tools, both under bench/results/
(soak-latest.md and soak-latest.json)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent.parent / "results"
TARGETS = {
    "kill": "≤ lease_timeout + reaper tick",
    "pause": "≤ 2 s",
    "reset": "",
    "term": "≤ drain_timeout",
    "stop": "≤ 0.5 s",
}
HOW_MEASURED = (
    "SIGKILL → job restarted: from the kill to the first start, in another process, of a job the "
    "killed one had open in the ledger (1 s jobs are enqueued just before each kill). Redis back / "
    "reset → first completion: from the SIGCONT (or the reset) to the first ledger `end` of a run "
    "that started after it. SIGTERM → exit: from the signal to the process's exit, polled every "
    "5 ms; targets from docs/reliability.md §5.5."
)


def failed(run: dict[str, Any]) -> bool:
    features_failed = "features" in run and not run["features"]["ok"]
    return bool(run["losses"] or run["violations"] or run["producer_error"] or features_failed)


def write(document: dict[str, Any], stem: str = "soak-latest") -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    markdown, data = RESULTS / f"{stem}.md", RESULTS / f"{stem}.json"
    markdown.write_text(render(document))
    data.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    return markdown, data


def _n(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _arrow(*values: float | None, digits: int = 1) -> str:
    return " → ".join(_n(v, digits) for v in values)


def render(document: dict[str, Any]) -> str:
    runs: list[dict[str, Any]] = document["runs"]
    o = runs[0]["options"]
    verdict = "FAIL" if any(failed(r) for r in runs) else "PASS"
    lines = [
        f"# jobd soak — {document['date']}",
        "",
        f"`{document['command']}` · {document['machine_line']} · redis-server "
        f"{document['redis_server']} · jobd {document['machine']['jobd_commit']} · **{verdict}**",
        "",
        f"{o['workers']} worker processes x concurrency {o['concurrency']}, lease_timeout "
        f"{o['lease_timeout']:g} s, drain_timeout {o['drain_timeout']:g} s, keep_result "
        f"{o['keep_result']:g} s; the `chaos` ledger job sleeping {o['job_seconds'] * 1000:g} ms; "
        f"workers reach Redis (AOF everysec) through the fault proxy. Chaos: every "
        f"{o['chaos_every']:g} s the next of SIGKILL a worker / pause Redis {o['pause_seconds']:g} s "
        f"/ reset connections / SIGTERM a worker (seed {o['seed']}).",
        "",
        "## Summary",
        "",
        "| | " + " | ".join(r["mode"] for r in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    rows: list[tuple[str, Any]] = [
        ("load duration, s", lambda r: _n(r["load_seconds"])),
        (f"rate achieved, jobs/s (target {o['rate']:g}): all / steady `chaos` jobs",
         lambda r: f"{_n(r.get('rate_achieved_all', r['rate_achieved']))} / {_n(r['rate_achieved'])}"),
        ("jobs acknowledged (steady + feature mix + 1 s jobs before kills)",
         lambda r: f"{r['acked']:,} ({r['acked_steady']:,} + {r['acked_long']:,})"
         if "acked_features" not in r else
         f"{r['acked']:,} ({r['acked_steady']:,} + {r['acked_features']:,} + {r['acked_long']:,})"),
        ("jobs completed (an `end` in the ledger)", lambda r: f"{r['completed']:,}"),
        ("**losses** (acknowledged, never completed)", lambda r: f"**{r['losses']}**"),
        ("duplicates: jobs (extra runs)",
         lambda r: f"{r['duplicates']['jobs']} ({r['duplicates']['extra_runs']})"),
        ("of which unexplained", lambda r: str(r["duplicates"]["causes"].get("unexplained", 0))),
        ("**invariant violations** (checker I1-I8)", lambda r: f"**{len(r['violations'])}**"),
        ("unacknowledged enqueues / producer retries",
         lambda r: f"{r['unsure']} / {r['producer_retries']}"),
        ("queue wait p50 / p99 / max, ms", lambda r: " / ".join(
            _n(r["queue_wait_ms"][k]) for k in ("p50", "p99", "max"))),
        ("worker RSS slope, max over processes, MiB/min (second half, past warm-up)",
         lambda r: _n(r["rss_max_slope_mib_per_min"], 3)),
        ("Redis used_memory start → peak → end → after keep_result, MiB", lambda r: _arrow(
            r["redis"]["used_memory_start_mib"], r["redis"]["used_memory_peak_mib"],
            r["redis"]["used_memory_end_mib"], r["redis"]["used_memory_after_keep_result_mib"])),
        ("Redis used_memory slope after the keep_result window, MiB/min",
         lambda r: _n(r["redis"]["used_memory_slope_mib_per_min"], 3)),
        ("Redis keys start → peak → end → after keep_result (peak ≈ rate * keep_result)",
         lambda r: _arrow(r["redis"]["keys_start"], r["redis"]["keys_peak"],
                          r["redis"]["keys_end"], r["redis"]["keys_after_keep_result"], digits=0)
         + f" (≈ {r['redis']['keys_expected']:,})"),
        ("Redis key count slope after the keep_result window, keys/min",
         lambda r: _n(r["redis"].get("keys_slope_per_min"), 1)),
        ("drain after the load, s", lambda r: _n(r["drain_seconds"])),
        ("**feature checks** (limits, event streams, workflows)",
         lambda r: "off" if "features" not in r else "**pass**" if r["features"]["ok"] else "**FAIL**"),
    ]  # fmt: skip
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in runs) + " |")
    for run in runs:
        lines += ["", *_details(run)]
    return "\n".join(lines) + "\n"


def _details(run: dict[str, Any]) -> list[str]:
    mode = run["mode"]
    lines = [f"## {mode}", ""]
    if run["faults"]:
        lines += ["Recovery times (seconds):", ""]
        lines += ["| measure | occurrences | measured | median | max | target |"]
        lines += ["|---|---|---|---|---|---|"]
        for kind, rec in run["recovery"].items():
            lines.append(
                f"| {rec['label']} | {rec['count']} | {rec['measured']} | {_n(rec['median_s'], 2)} "
                f"| {_n(rec['max_s'], 2)} | {TARGETS.get(kind, '')} |"
            )
        lines += ["", HOW_MEASURED, ""]
    else:
        stop = run["recovery"]["stop"]
        lines += [f"SIGTERM → exit at the end (idle): median {_n(stop['median_s'], 2)} s, max "
                  f"{_n(stop['max_s'], 2)} s over {stop['count']} workers.", ""]  # fmt: skip
    lines += _rss(run["rss"])
    if "features" in run:
        lines += ["", *_features(run["features"])]
    dup = run["duplicates"]
    if dup["causes"]:
        lines += ["", "Re-runs by cause (a killed or drained worker's re-runs are allowed):", ""]
        lines += [f"- {cause}: {count}" for cause, count in dup["causes"].items()]
        lines += [f"  - {example}" for example in dup["unexplained_examples"]]
    if run["lost_ids"]:
        lines += ["", f"Lost (first 20): {', '.join(run['lost_ids'])}"]
    lines += ["", f"Violations: {len(run['violations'])}" + (":" if run["violations"] else ".")]
    if run["violations"]:
        lines += ["", "```", *run["violations"][:30], "```"]
    if run["faults"]:
        lines += ["", "Faults:", "", "| at s | fault | worker | pid | runs open | seconds | exit | note |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for f in run["faults"]:
            lines.append(
                f"| {f['at_s']} | {f['kind']} | {f['worker']} | {f['pid'] or ''} | "
                f"{f['orphans'] if f['kind'] == 'kill' else ''} | {_n(f['seconds'], 3)} | "
                f"{'' if f['exit_code'] is None else f['exit_code']} | {f['note']} |"
            )
    problems = [*run["chaos_errors"], *run["log_trouble"]]
    if run["producer_error"]:
        problems.append(f"producer: {run['producer_error']}")
    if run["ledger_read_errors"]:
        problems.append(f"ledger read errors: {run['ledger_read_errors']}")
    if problems:
        lines += ["", "Worth a look (log lines with Traceback, ERROR, CRITICAL or \"lease lost\"; "
                  "a Redis pause or a reset makes ERROR lines of its own):", "", "```", *problems,
                  "```"]  # fmt: skip
    return lines


def _rss(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "Worker RSS (MiB; slope by least squares over the samples of the run's second half that are "
        "also past the process's own warm-up):",
        "",
        "| process | pid | seconds in the run | start | peak | end | slope MiB/min | fitted from s "
        "(samples) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['pid']} | {r['from_s']:g}-{r['to_s']:g} | {r['start_mib']} | "
            f"{r['peak_mib']} | {r['end_mib']} | {_n(r['slope_mib_per_min'], 3)} | "
            f"{r['fit_from_s']:g} ({r['slope_samples']}) |"
        )
    return lines


def _features(f: dict[str, Any]) -> list[str]:
    mix, lim, ev, wf = f["mix"], f["limits"], f["events"], f["workflows"]
    lines = [
        f"Feature mix ({'pass' if f['ok'] else 'FAIL'}): per second {mix['limited_rate']:g} "
        f"`limited` jobs ({mix['limited_seconds'] * 1000:g} ms, every other one in one of "
        f'{mix["groups"]} groups) under `rate = "{mix["limit_rate"]}/s"` and `concurrency = '
        f"{mix['limit_concurrency']}`; {mix['emitter_rate']:g} `emitter` jobs of {mix['tokens']} "
        f"`token` events and 4 progress reports over {mix['emitter_seconds']:g} s, one in "
        f"{mix['follow_every']} followed live with "
        f"`job.events()`; {mix['flow_rate']:g} diamond flows (a; b, c after a; d after b and c).",
        "",
        "| check | figure |",
        "|---|---|",
        f"| concurrency: running set sampled every 50 ms, peak (limit {lim['limit_concurrency']}) "
        f"| {lim['running_peak']} over {lim['running_samples']:,} samples |",
        f"| rate: most starts in any 1 s, started_at stamps (limit {lim['limit_rate_per_s']}) | "
        f"{lim['most_starts_in_1s']} ({lim['stamps']:,} stamps of {lim['jobs']:,} jobs; "
        f"{_n(lim['start_rate_per_s'])} starts/s overall) |",
        f"| limit slots and held jobs left after the drain | {lim['left_at_end']} |",
        f"| event streams followed / ended succeeded / with problems | {ev['followed']:,} / "
        f"{ev['ended_succeeded']:,} / {ev['with_problems']} ({ev['events_read']:,} events; "
        f"{ev['retried_tries_seen']} retried tries seen; {ev['reconnects']} reader reconnects; "
        f"{ev['dropped_notices']} with a `dropped` notice) |",
        f"| workflows: flows / children / a child started before a parent ended | {wf['flows']:,} "
        f"/ {wf['children']:,} / {len(wf['order_violations'])} |",
        f"| flow sends retried / given up | {wf['flow_retries']} / {wf['flows_given_up']} |",
    ]
    problems = [*ev["problems"], *wf["order_violations"][:20]]
    for error in (f["producer_error"], ev["follower_error"]):
        if error:
            problems.append(error)
    if problems:
        lines += ["", "```", *problems, "```"]
    return lines
