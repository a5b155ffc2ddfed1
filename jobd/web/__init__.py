"""The web dashboard (`pip install 'jobd[web]'`): queues, jobs, dead letters, cron, workers and
limits in a browser, read from Redis, with retry, purge and abort as CSRF-protected POSTs.

    jobd web --config jobs.toml                      # standalone, on 127.0.0.1:9181
    app.mount("/jobd", jobd.web.create_app(client))  # inside a FastAPI or Starlette app

    app.py        create_app: the Starlette app, its routes and error pages
    pages.py      the pages (GET), each read from Redis on every request
    actions.py    retry, purge and abort (POST)
    data.py       queue counts, throughput, workers, limits: bounded reads
    jobs.py       job lists (paged by rank, filters over a bounded window) and single jobs
    render.py     Jinja2 (autoescape), filters, the throughput chart
    security.py   basic auth, security headers, CSRF tokens, flash messages
    templates/, static/   the pages and their CSS and JavaScript (no CDN)

Needs Starlette and Jinja2 (the `web` extra); `jobd.client` and the worker never import this.
"""

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"the jobd dashboard needs the web extra ({error.name} is missing): pip install 'jobd[web]'"
    ) from error

from jobd.web.app import create_app

__all__ = ["create_app"]
