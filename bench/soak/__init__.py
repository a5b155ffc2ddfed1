"""The soak benchmark, `python -m bench.soak --help`: jobd under a steady load for minutes, calm and
with chaos, reporting memory growth, Redis footprint, losses and duplicates from the ledger, and
recovery times (docs/reliability.md §5.5).

It reuses the chaos suite's harness (`tests.support`): a private `redis-server` with AOF for the
jobs, a second, never-faulted one for the ledger that the `chaos` test job writes to, `jobd`
daemons as subprocesses whose Redis connections pass through a fault proxy, and the invariant
checker over the ledger and the final Redis state.

| module | job |
|---|---|
| `__main__` | the command line; runs calm and/or chaos, writes the report, sets the exit status |
| `world` | the processes of one run: both Redis servers, the proxy, the worker fleet |
| `ledger` | follows the ledger as it grows: runs open per process, jobs ended, recovery watches |
| `producer` | enqueues at a steady rate, retrying a batch with the same ids until acknowledged |
| `sampler` | once a second: RSS per worker, Redis used_memory and DBSIZE, jobs done; the slope fit |
| `chaos` | the fault cycle (SIGKILL, Redis pause, connection resets, SIGTERM) and its recoveries |
| `run` | one run, from start to checker |
| `analysis` | losses, duplicates by cause, violations, queue wait, recovery times |
| `report` | every run as Markdown and JSON under bench/results/ |
"""
