"""Rendering: the Jinja2 environment (autoescape on, for every template), the filters the
templates use, the throughput chart's geometry, and `page()`, which renders a page or, for the
live refresh, only its live part.

Everything a job carries (arguments, results, errors, names) reaches the page through Jinja's
escaping; nothing is marked safe. Long values are cut at CUT characters, with a link to the whole.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from jobd.config.durations import format_age
from jobd.web.data import Minute
from jobd.web.security import clear_flash, csrf_token, set_csrf_cookie, take_flash

HERE = Path(__file__).parent
CUT = 2000
"""Characters of a value shown before "show all"."""
FRAGMENT_HEADER = "x-jobd-fragment"
"""Sent by jobd.js for the live refresh: the answer is the page's live part alone."""
STATUS_CLASS = {
    "queued": "info", "scheduled": "muted", "waiting": "muted", "running": "active",
    "succeeded": "ok", "failed": "bad", "aborted": "warn", "not_found": "muted", "dead": "bad",
}  # fmt: skip


def format_count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def format_time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def relative(value: datetime | None, now: datetime) -> str:
    """ "5m03s ago" or "in 2m10s"."""
    if value is None:
        return "-"
    seconds = (now - value).total_seconds()
    return f"in {format_age(-seconds)}" if seconds < 0 else f"{format_age(seconds)} ago"


def pretty(value: Any) -> str:
    """A JSON value for people: indented, non-ASCII kept."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        return repr(value)


def cut(value: str | None, limit: int = CUT) -> str:
    if value is None:
        return ""
    return value if len(value) <= limit else value[:limit] + "…"


def size(count: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


# -- the chart ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    parts: tuple[tuple[str, float, float], ...]
    """(css class, y, height) from the bottom up: succeeded, retried, failed."""
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    peak: int
    totals: dict[str, int]
    summary: str


def chart(minutes: Sequence[Minute], width: int = 600, height: int = 80) -> Chart:
    """Bars per minute, stacked: succeeded, retried, failed; scaled to the busiest minute."""
    peak = max((m.total for m in minutes), default=0)
    step = width / max(len(minutes), 1)
    bars = []
    for index, minute in enumerate(minutes):
        y = float(height)
        parts = []
        for name, value in (("ok", minute.succeeded), ("warn", minute.retried),
                            ("bad", minute.failed + minute.other)):  # fmt: skip
            if value and peak:
                tall = max(value / peak * (height - 2), 1.0)
                y -= tall
                parts.append((name, round(y, 2), round(tall, 2)))
        label = (
            f"{minute.start.strftime('%H:%M')}Z: {minute.succeeded} succeeded, "
            f"{minute.retried} retried, {minute.failed} failed"
        )
        bars.append(
            Bar(round(index * step + 0.5, 2), round(max(step - 1, 1), 2), tuple(parts), label)
        )
    totals = {
        "succeeded": sum(m.succeeded for m in minutes),
        "retried": sum(m.retried for m in minutes),
        "failed": sum(m.failed for m in minutes),
    }
    summary = (
        f"last hour: {totals['succeeded']:,} succeeded, {totals['retried']:,} retried, "
        f"{totals['failed']:,} failed; busiest minute {peak:,}"
    )
    return Chart(width, height, tuple(bars), peak, totals, summary)


# -- the environment ---------------------------------------------------------------------------


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        count=format_count, age=format_age, time=format_time, pretty=pretty, cut=cut, size=size,
        status_class=lambda status: STATUS_CLASS.get(str(status), "muted"),
    )  # fmt: skip
    env.globals.update(relative=relative, chart=chart, CUT=CUT)
    return env


@cache
def asset_version(name: str) -> str:
    """A short hash of a static file, so a new release's assets are not taken from a cache."""
    return hashlib.sha256((HERE / "static" / name).read_bytes()).hexdigest()[:10]


def link(request: Request, name: str, /, query: dict[str, Any] | None = None, **params: Any) -> str:
    """The path of route `name` (under the dashboard's mount point), with a query string."""
    path = str(request.url_for(name, **params).path)
    pairs = {key: value for key, value in (query or {}).items() if value not in (None, "", False)}
    return path + ("?" + urlencode(pairs) if pairs else "")


def page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """Render `template` with the dashboard's shared context; only its live part when the live
    refresh asks (FRAGMENT_HEADER). Sets the CSRF cookie when the session has none yet."""
    state = request.app.state
    token, new = csrf_token(request)
    fragment = request.headers.get(FRAGMENT_HEADER) == "1"
    flash = None if fragment else take_flash(request)
    shared = {
        "request": request,
        "fragment": fragment,
        "flash": flash,
        "csrf": token,
        "read_only": state.read_only,
        "title": state.title,
        "refresh_ms": state.refresh_ms,
        "redis_url": state.redis_url,
        "prefix": state.key_prefix,
        "link": lambda name, query=None, **params: link(request, name, query, **params),
        "asset": lambda name: link(request, "static", {"v": asset_version(name)}, path=name),
        "path": request.url.path,
    }
    html = environment().get_template(template).render({**shared, **context})
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    if fragment:
        response.headers["X-Jobd-Fragment"] = "1"
    if new:
        set_csrf_cookie(request, response, token)
    if flash is not None:
        clear_flash(request, response)
    return response
