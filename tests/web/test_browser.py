"""The dashboard in a real headless Chromium (Debian's chromium, driven by Playwright): the main
flows as an operator goes through them, with screenshots of what they see, saved in a temporary
directory (`pytest -s` prints it). `JOBD_SAVE_SCREENSHOT=1 python -m pytest tests/web -k overview`
also copies the overview to docs/images/dashboard.png, the picture of docs/dashboard.md."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect, sync_playwright

import jobd.web
from jobd.client import Client, SyncClient
from jobd.config import loader
from jobd.redis.keys import QueueKeys
from tests.support.daemon import Daemon, write_config
from tests.support.wait import wait_until
from tests.system.conftest import MakeDaemon
from tests.web.conftest import SCREENSHOTS, Serve, chromium_or_skip, run_burst

SCRIPT = "<script>window.__pwned = 1; alert(1)</script>"
IMAGE = "<img src=x onerror=window.__pwned=2>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, serve: Serve) -> Iterator[Page]:
    """A fresh browser context, closed before the dashboards stop; the test fails on any script
    error or console error (a blocked asset or a Content-Security-Policy violation shows there)."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    yield page
    context.close()
    assert problems == []


def shot(page: Page, directory: Path, name: str) -> Path:
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def worker(make_daemon: MakeDaemon, web_config: Path) -> Daemon:
    return make_daemon(web_config).start().wait_running()


def seed_history(connection: redis.Redis, prefix: str, queues: dict[str, tuple[int, str]]) -> None:
    """An hour of per-minute outcome buckets as workers write them (jobd.worker.stats)."""
    seconds, _ = connection.time()
    now_minute = int(seconds) // 60
    pipe = connection.pipeline(transaction=False)
    for queue, (scale, failing) in queues.items():
        for back in range(60):
            minute = now_minute - back
            wave = 1 + math.sin(back / 6) * 0.45 + math.cos(back / 2.3) * 0.15
            key = f"{QueueKeys(prefix, queue).base}stats:{minute}"
            pipe.hset(key, mapping={
                "succeeded": int(scale * wave),
                "retried": int(scale * 0.04 * (1 + back % 5)),
                "failed": scale // 15 if back % 11 == 3 else 0,
                **({f"failed:{failing}": scale // 15} if back % 11 == 3 else {}),
            })  # fmt: skip
            pipe.expire(key, 7200)
    pipe.execute()


def cell(page: Page, queue: str, state: str) -> str:
    return page.locator(f'tr[data-queue="{queue}"] td[data-state="{state}"]').inner_text().strip()


def test_the_overview_shows_the_counts_redis_holds(
    page: Page, serve: Serve, worker: Daemon, web_config: Path, redis_url: str,
    key_prefix: str, screenshots: Path,
) -> None:  # fmt: skip
    connection = redis.Redis.from_url(redis_url)
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        running = [jobs.enqueue("sleep", 30) for _ in range(3)]
        for number in range(3):
            jobs.enqueue("flaky", f"key-{number}", max_tries=1)
        jobs.enqueue("parents_echo", "after the sleeps", after=running)
        for number in range(12):
            jobs.enqueue("send_invoice", {"invoice": 1000 + number}, queue="reports",
                         priority=number % 3)  # fmt: skip
        for number in range(4):
            jobs.enqueue("send_email", f"user{number}@example.com", queue="email", delay=3600)
        wait_until(
            lambda: (
                connection.zcard(QueueKeys(key_prefix, "default").dead) == 3
                and connection.zcard(QueueKeys(key_prefix, "default").running) == 3
            ),
            message="the worker did not take the jobs",
        )
    seed_history(
        connection, key_prefix,
        {"default": (40, "resize_image"), "email": (18, "send_email"), "reports": (9, "send_invoice")},
    )  # fmt: skip
    settings = loader.load(web_config)
    served = serve(settings=settings, queues=["reports"])

    page.goto(served.url + "/")
    expect(page.locator("h2", has_text="Queues")).to_be_visible()
    for queue in ("default", "email", "reports"):
        keys = QueueKeys(key_prefix, queue)
        assert cell(page, queue, "queued") == f"{connection.zcard(keys.queued):,}"
        assert cell(page, queue, "scheduled") == f"{connection.zcard(keys.scheduled):,}"
        assert cell(page, queue, "waiting") == f"{connection.zcard(keys.waiting):,}"
        assert cell(page, queue, "running") == f"{connection.zcard(keys.running):,}"
        assert cell(page, queue, "dead") == f"{connection.zcard(keys.dead):,}"
    assert cell(page, "reports", "queued") == "12"
    assert page.locator('[data-total="running"]').inner_text() == "3"
    assert page.locator("#queues svg.chart").count() == 3
    failures = page.locator("section", has_text="Failures by function")
    expect(failures.locator("tr", has_text="resize_image")).to_contain_text("12")
    expect(page.locator(".stat-workers .stat-value")).to_have_text("1")
    expect(page.locator("main")).to_contain_text(f":{worker.pid}")  # its host:pid
    path = shot(page, screenshots, "overview")
    page.set_viewport_size({"width": 1280, "height": 820})
    page.screenshot(path=str(screenshots / "dashboard.png"))
    if os.environ.get("JOBD_SAVE_SCREENSHOT"):  # docs/dashboard.md's picture, refreshed on request
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshots / "dashboard.png", SCREENSHOTS / "dashboard.png")
    assert path.stat().st_size > 10_000
    page.set_viewport_size({"width": 420, "height": 900})
    shot(page, screenshots, "overview-narrow")
    connection.close()


def test_a_failing_job_is_a_dead_letter_with_its_traceback_and_retry_runs_it_again(
    page: Page, serve: Serve, worker: Daemon, redis_url: str, key_prefix: str,
    screenshots: Path, ledger: redis.Redis,
) -> None:  # fmt: skip
    fix = f"{key_prefix}:fixed"
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        job = jobs.enqueue("flaky", fix, max_tries=1)
        wait_until(lambda: job.status() == "failed", message="the job did not fail")
    served = serve(refresh_seconds=0)

    page.goto(served.url + "/dead")
    row = page.locator("table.jobs tbody tr", has_text=job.id)
    expect(row).to_contain_text("RuntimeError")
    row.get_by_role("link", name=job.id).click()
    expect(page.locator("#job-status")).to_have_text("failed")
    traceback = page.locator("#traceback")
    expect(traceback).to_contain_text("tests/web/jobs.py")
    expect(traceback).to_contain_text("RuntimeError: upstream refused")
    shot(page, screenshots, "dead-job")

    ledger.set(fix, 1)  # the fix is deployed
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".flash")).to_contain_text("Retried 1 dead job")
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        wait_until(lambda: jobs.job(job.id).status() == "succeeded", message="not run again")
    page.reload()
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#result")).to_contain_text('"fixed"')
    shot(page, screenshots, "retried-job")


def test_a_read_only_dashboard_offers_no_buttons(
    page: Page, serve: Serve, make_daemon: MakeDaemon, web_config: Path, redis_url: str,
    key_prefix: str, screenshots: Path,
) -> None:  # fmt: skip
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        job = jobs.enqueue("flaky", "never", max_tries=1)
        waiting = jobs.enqueue("send_email", "x", queue="reports")  # no worker takes it
    run_burst(make_daemon, web_config)
    served = serve(read_only=True)
    for path in ("/dead", f"/queues/default/job?id={job.id}", f"/queues/reports/job?id={waiting.id}",
                 "/queues/default?state=dead"):  # fmt: skip
        page.goto(served.url + path)
        expect(page.locator(".badge", has_text="read-only")).to_be_visible()
        assert page.locator("main form[method=post]").count() == 0
        for name in ("Retry", "Purge", "Abort", "Retry selected", "Purge selected"):
            assert page.get_by_role("button", name=name).count() == 0
    shot(page, screenshots, "read-only")


def test_it_works_mounted_under_a_prefix_in_fastapi(
    page: Page, serve: Serve, make_daemon: MakeDaemon, web_config: Path, redis_url: str,
    key_prefix: str, screenshots: Path,
) -> None:  # fmt: skip
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        dead = [jobs.enqueue("flaky", f"never-{n}", max_tries=1) for n in range(3)]
    run_burst(make_daemon, web_config)

    def make_app(client: Client) -> FastAPI:
        app = FastAPI()
        app.mount("/admin/jobs", jobd.web.create_app(client, title="Acme jobs"))
        return app

    served = serve(make_app=make_app)
    page.goto(served.url + "/admin/jobs/")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(245, 246, 248)"  # the stylesheet came from under the prefix
    page.get_by_role("link", name="Dead letters").click()
    assert page.url.startswith(served.url + "/admin/jobs/dead")
    page.get_by_role("link", name="default").first.click()
    for job in dead[:2]:
        page.get_by_label(f"Select {job.id}").check()
    page.get_by_role("button", name="Retry selected").click()
    expect(page.locator(".flash")).to_contain_text("Retried 2 dead jobs")
    assert page.url.startswith(served.url + "/admin/jobs/dead?queue=default")
    expect(page.locator(".brand")).to_have_text("Acme jobs")
    shot(page, screenshots, "mounted-dead-letters")
    page.get_by_role("link", name=dead[2].id).click()
    assert page.url.startswith(served.url + "/admin/jobs/queues/default/job?id=")
    shot(page, screenshots, "mounted-job")
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        assert [jobs.job(job.id).status() for job in dead] == ["queued", "queued", "failed"]


def test_a_script_in_the_arguments_is_shown_and_runs_nothing(
    page: Page, serve: Serve, redis_url: str, key_prefix: str, screenshots: Path
) -> None:
    dialogs: list[Any] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        job = jobs.enqueue("send_email", SCRIPT, IMAGE, subject=SCRIPT, job_id="<b>x</b>")
    served = serve()
    page.goto(served.url + "/queues/default")
    expect(page.locator("table.jobs")).to_contain_text(SCRIPT)
    page.get_by_role("link", name="<b>x</b>").click()
    expect(page.locator("#args")).to_contain_text(SCRIPT)
    expect(page.locator("#args")).to_contain_text(IMAGE)
    expect(page.locator("#kwargs")).to_contain_text(SCRIPT)
    expect(page.locator("h1")).to_have_text(job.id)
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []
    shot(page, screenshots, "escaped")


def test_pages_refresh_live_without_a_reload(
    page: Page, serve: Serve, redis_url: str, key_prefix: str
) -> None:
    served = serve(refresh_seconds=0.2)
    page.goto(served.url + "/")
    page.evaluate("window.__same_page = true")
    assert cell(page, "default", "queued") == "0"
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        jobs.enqueue_many([("send_email", (n,), {}) for n in range(7)])
    expect(page.locator('tr[data-queue="default"] td[data-state="queued"]')).to_have_text("7")
    assert page.evaluate("window.__same_page") is True
    page.locator("#live-toggle").click()  # paused: the figures stay
    expect(page.locator("#live-toggle")).to_have_attribute("aria-pressed", "false")


def test_a_job_page_shows_its_events(
    page: Page, serve: Serve, make_daemon: MakeDaemon, web_config: Path, redis_url: str,
    key_prefix: str, screenshots: Path,
) -> None:  # fmt: skip
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        job = jobs.enqueue("stream_tokens", 4)
    run_burst(make_daemon, web_config)
    served = serve()
    page.goto(f"{served.url}/queues/default/job?id={job.id}")
    events = page.locator("#events table")
    expect(events).to_contain_text("succeeded")
    names = page.locator("#events tbody tr td:nth-child(2)").all_inner_texts()
    assert names == ["started", "token", "token", "token", "progress", "token", "succeeded"]
    expect(page.locator("#events-state")).to_have_text("ended: succeeded")
    expect(page.locator("#result")).to_contain_text("4")
    shot(page, screenshots, "events")


def test_every_page_of_a_configured_fleet(
    page: Page, serve: Serve, make_daemon: MakeDaemon, tmp_path: Path, redis_url: str,
    key_prefix: str, screenshots: Path,
) -> None:  # fmt: skip
    """Cron entries, limits and workers come from the configuration and the registry."""
    config = write_config(
        tmp_path, redis_url, key_prefix,
        functions={"flaky": {"path": "tests.web.jobs:flaky", "limits": ["api"]}},
        limits={"api": {"rate": "50/s", "concurrency": 2}},
        cron=[{"name": "nightly-report", "function": "echo", "schedule": "0 3 * * *"}],
    )  # fmt: skip
    worker = make_daemon(config).start().wait_running()
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        for number in range(60):
            jobs.enqueue("send_email", f"user{number}@example.com", queue="email",
                         priority=number % 2)  # fmt: skip
        jobs.enqueue("sleep", 30)
        jobs.enqueue("retry_with_delay", 600)
    served = serve(settings=loader.load(config), queues=["email"])
    page.goto(served.url + "/workers")
    expect(page.locator("#workers")).to_contain_text(str(worker.pid))
    expect(page.locator("#workers")).to_contain_text("running now:")  # the sleep job
    shot(page, screenshots, "workers")
    page.get_by_role("link", name="Cron").click()
    expect(page.locator("main")).to_contain_text("nightly-report")
    expect(page.locator("main")).to_contain_text("0 3 * * *")
    shot(page, screenshots, "cron")
    page.get_by_role("link", name="Limits").click()
    expect(page.locator("main table")).to_contain_text("api")
    expect(page.locator("main table")).to_contain_text("of 2")
    shot(page, screenshots, "limits")
    page.get_by_role("link", name="Scheduled").click()
    expect(page.locator("main")).to_contain_text("retry_with_delay")
    shot(page, screenshots, "scheduled")
    page.goto(served.url + "/queues/email")
    expect(page.locator("table.jobs tbody tr")).to_have_count(50)
    expect(page.locator(".pager-info")).to_have_text("1\u201350 of 60")
    shot(page, screenshots, "queue")
    page.get_by_role("link", name="Next \u203a").click()
    expect(page.locator("table.jobs tbody tr")).to_have_count(10)
    page.get_by_label("Function").fill("send_email")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#filter-note")).to_contain_text(
        "looked at jobs 1\u201350 of 60 and found 50"
    )
