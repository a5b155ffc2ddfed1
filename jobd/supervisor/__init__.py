"""`jobd --processes N`: one command runs N worker processes under a supervisor.

- main: loads and checks the configuration once, then runs the supervisor (the cli calls `supervise`)
- group: the supervisor: starts, restarts (policy), stops the workers; signals; systemd
- child: what a worker does differently when a supervisor started it (private port, parent death)
- table, policy: the slots of the workers; when a dead one starts again
- notify: the private sd_notify sockets the workers report to
- probes, aggregate, metrics: the group's /healthz, /readyz and /metrics

docs/processes.md explains it to users.
"""
