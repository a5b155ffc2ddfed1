"""What operators and their tools see of a running worker.

metrics.py      Prometheus metrics on a private registry
health.py       liveness and readiness, shared by the event loop and the probe server
probes.py       the /healthz, /readyz and /metrics server, on a thread of its own
systemd.py      sd_notify (Type=notify, watchdog)
logs.py         text or JSON log lines, arguments redacted
serverwatch.py  warnings about the Redis server's own settings, and data-loss detection
"""
