"""The worker: one job from claim to stored outcome, and the loops that keep a worker alive.

    lifecycle.py   Worker: builds the parts, runs their loops, drains on shutdown
    context.py     WorkerContext: what the parts share (settings, Redis calls, store, metrics, ...)
    running.py     RunningJobs: the jobs this worker runs now, their tasks and cancellation
    fetcher.py     claiming jobs within the concurrency, and waiting for work
    handler.py     JobHandler: one claimed job from start to succeeded / retried / dead-lettered
    runner.py      running one job's function without touching Redis (timeout, thread pool)
    finisher.py    storing outcomes, batched
    backoff.py     the delay before the next try
    leases.py      LeaseKeeper: renewing leases, reaping dead workers' jobs, abort requests
    monitor.py     readiness probe, queue figures, the worker registry entry
    scheduler.py   CronScheduler: firing [[cron]] ticks; cron.py: when the ticks fall
    store.py       the worker's Redis operations, one method per Lua script
    limits.py      what claim.lua and a throttled job need of [limits]
    resilience.py  calling Redis through outages (retries with jitter, readiness)
    functions.py   import paths into the job functions and hooks
    deadlines.py   job timeouts with one sweep; blocking.py: naming a job that blocks the loop

Importing this package loads nothing: `jobd check` imports `functions` alone.
"""
