"""The workloads, as adapter steps, and their interleaved order (A B C …, A B C …)."""

from __future__ import annotations

from dataclasses import dataclass

PEERS = ["jobd", "arq", "saq", "taskiq", "dramatiq"]
SCALE_OUT_PEERS = ["jobd", "arq"]
SCALE_OUT_WORKERS = [2, 4]  # 1 worker is W2
PRODUCERS = 200  # W1c: enqueues in flight at once, as a busy web app's requests


@dataclass(frozen=True)
class Sizes:
    jobs: int  # W1, W1b, W1c, W2, W6
    latency_jobs: int  # W3
    rate: float  # W3, jobs/s
    sleep_jobs: int  # W5
    concurrency: int
    batch: int  # W1b
    llm_jobs: int = 20_000  # W7, W7L: jobs awaiting 1 s
    llm_concurrency: int = 2000  # W7, W7L

    @classmethod
    def for_run(cls, jobs: int, quick: bool) -> Sizes:
        if quick:
            return cls(jobs, latency_jobs=400, rate=200.0, sleep_jobs=1000, concurrency=100,
                       batch=1000, llm_jobs=4000)  # fmt: skip
        return cls(jobs, latency_jobs=2000, rate=200.0, sleep_jobs=5000, concurrency=100,
                   batch=1000)  # fmt: skip


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    peers: list[str]
    args: list[str]


def workloads(sizes: Sizes, peers: list[str]) -> list[Workload]:
    c = ["--concurrency", str(sizes.concurrency)]
    found = [
        Workload("W1", "enqueue, one awaited call at a time", peers,
                 ["enqueue", "--jobs", str(sizes.jobs)]),
        Workload("W1b", "bulk enqueue (batch API)", peers,
                 ["bulk", "--jobs", str(sizes.jobs), "--batch", str(sizes.batch)]),
        Workload("W1c", f"concurrent producers: {PRODUCERS} enqueues in flight from one process",
                 peers, ["concurrent", "--jobs", str(sizes.jobs), "--concurrency", str(PRODUCERS)]),
        Workload("W2", "drain: 1 worker spawned on queued no-op jobs", peers,
                 ["drain", "--jobs", str(sizes.jobs), *c]),
        Workload("W3", "latency at a steady rate, warmed-up worker", peers,
                 ["latency", "--jobs", str(sizes.latency_jobs), "--rate", str(sizes.rate), *c]),
        Workload("W5", "concurrency: jobs awaiting 10 ms", peers,
                 ["drain", "--function", "sleep", "--jobs", str(sizes.sleep_jobs), *c]),
    ]  # fmt: skip
    llm = ["--function", "llm", "--jobs", str(sizes.llm_jobs),
           "--concurrency", str(sizes.llm_concurrency)]  # fmt: skip
    found.append(Workload("W7", f"LLM-shaped: jobs awaiting 1 s, concurrency {sizes.llm_concurrency:,}",
                          peers, ["drain", *llm]))  # fmt: skip
    if "jobd" in peers:  # the peers have no fleet-wide rate limit
        limited = ["drain", "--function", "llm_limited", *llm[2:]]
        found.append(Workload("W7L", 'W7 under `[limits.llm] rate = "1000/s"` (jobd only)',
                              ["jobd"], limited))  # fmt: skip
    scale_peers = [peer for peer in peers if peer in SCALE_OUT_PEERS]
    for count in SCALE_OUT_WORKERS if scale_peers else []:
        found.append(
            Workload(f"W6x{count}", f"scale-out: {count} workers", scale_peers,
                     ["drain", "--jobs", str(sizes.jobs), "--workers", str(count), *c])
        )  # fmt: skip
    return found


def schedule(loads: list[Workload], reps: int) -> list[tuple[int, Workload, str]]:
    """(rep, workload, peer) in run order: every peer runs a workload before the next one starts,
    and every workload runs once before any runs a second time."""
    return [
        (rep, load, peer) for rep in range(1, reps + 1) for load in loads for peer in load.peers
    ]
