"""The dashboard over plain HTTP (httpx), against a real uvicorn server and a real Redis: what it
shows, what it refuses (CSRF, read-only, basic auth), escaping, secrets, and the mount point."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

import jobd.web
from jobd.client import SyncClient
from tests.support.worker import settings_for
from tests.system.conftest import MakeDaemon
from tests.web.conftest import Serve, run_burst

SCRIPT = "<script>alert(1)</script>"


def token_of(http: httpx.Client, path: str = "/dead") -> str:
    page = http.get(path)
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, page.text
    assert http.cookies.get("jobd_csrf") == match[1]
    return match[1]


@pytest.fixture
def dead_job(make_daemon: MakeDaemon, web_config: Path, redis_url: str, key_prefix: str) -> str:
    """A job that failed for good (a real worker ran it), in queue default."""
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        job = jobs.enqueue("flaky", SCRIPT, max_tries=1)  # its error message names the key
    run_burst(make_daemon, web_config)
    return job.id


def test_pages_answer_and_show_what_redis_holds(
    serve: Serve, redis_url: str, key_prefix: str
) -> None:
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        for number in range(3):
            jobs.enqueue("send_email", number, queue="email")
        jobs.enqueue("resize", 640, delay=600)
        waiting = jobs.enqueue("report", after=[jobs.enqueue("fetch", "a").id])
    served = serve(queues=["email"])
    with httpx.Client(base_url=served.url, timeout=10) as http:
        for path in ("/", "/queues/email", "/dead", "/scheduled", "/cron", "/workers", "/limits"):
            assert http.get(path).status_code == 200, path
        overview = http.get("/").text
        row = re.search(r'<tr data-queue="email">(.*?)</tr>', overview, re.S)
        assert row, overview
        assert re.search(r'data-state="queued"><a [^>]*>3</a>', row[1])
        default = re.search(r'<tr data-queue="default">(.*?)</tr>', overview, re.S)
        assert default and re.search(r'data-state="waiting"><a [^>]*>1</a>', default[1])
        assert re.search(r'data-state="scheduled"><a [^>]*>1</a>', default[1])
        waiting_page = http.get("/queues/default", params={"state": "waiting"}).text
        assert waiting.id in waiting_page
        job = http.get("/queues/default/job", params={"id": waiting.id})
        assert job.status_code == 200 and "Parents" in job.text
        assert http.get("/queues/default/job", params={"id": "nope"}).status_code == 404
        assert http.get("/queues/no%20such/job", params={"id": "x"}).status_code == 404
        # the live refresh gets the page's live part alone
        fragment = http.get("/", headers={"X-Jobd-Fragment": "1"})
        assert fragment.headers["x-jobd-fragment"] == "1"
        assert "<html" not in fragment.text and 'data-queue="email"' in fragment.text
        assert "content-security-policy" in job.headers
        assert job.headers["x-frame-options"] == "DENY"


def test_arguments_results_and_errors_are_escaped(
    serve: Serve, dead_job: str, redis_url: str, key_prefix: str
) -> None:
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        job = jobs.enqueue("send_email", SCRIPT, note=SCRIPT, job_id=SCRIPT)
    served = serve()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        pages = [
            http.get("/queues/default").text,
            http.get("/queues/default/job", params={"id": job.id}).text,
            http.get("/queues/default", params={"function": SCRIPT, "group": SCRIPT}).text,
            http.get("/dead").text,
            http.get("/queues/default/job", params={"id": dead_job}).text,
        ]
        for page in pages:
            assert SCRIPT not in page and "<script>" not in page
        assert all("&lt;script&gt;alert(1)&lt;/script&gt;" in page for page in pages[:2])
        assert "upstream refused &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39;" in pages[4]


def test_a_post_without_the_session_token_is_refused(
    serve: Serve, dead_job: str, redis_url: str, key_prefix: str
) -> None:
    served = serve()
    form = {"action": "retry", "jobs": f"default {dead_job}"}
    with httpx.Client(base_url=served.url, timeout=10) as http:
        assert http.post("/actions/dead", data=form).status_code == 403  # no cookie, no token
        token = token_of(http)
        assert http.post("/actions/dead", data=form).status_code == 403  # cookie, no token
        wrong = {**form, "csrf": token[:-2] + "xx"}
        assert http.post("/actions/dead", data=wrong).status_code == 403
        elsewhere = http.post(
            "/actions/dead",
            data={**form, "csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert elsewhere.status_code == 403 and "another site" in elsewhere.text
        assert http.get("/actions/dead").status_code == 405
        with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
            assert jobs.job(dead_job).status() == "failed"  # nothing was done
        done = http.post(
            "/actions/dead", data={**form, "csrf": token, "next": "/dead"},
            headers={"Origin": served.url},
        )  # fmt: skip
        assert done.status_code == 303 and done.headers["location"].endswith("/dead")
        page = http.get("/dead").text
        assert "Retried 1 dead job" in page
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        assert jobs.job(dead_job).status() == "queued"


def test_a_read_only_dashboard_offers_no_action_and_refuses_them(
    serve: Serve, dead_job: str, redis_url: str, key_prefix: str
) -> None:
    served = serve(read_only=True)
    with httpx.Client(base_url=served.url, timeout=10) as http:
        for path, params in (
            ("/dead", {}),
            ("/queues/default", {"state": "dead"}),
            ("/queues/default/job", {"id": dead_job}),
        ):
            page = http.get(path, params=params)
            assert page.status_code == 200
            assert "read-only" in page.text
            assert 'method="post"' not in page.text
            assert not re.search(r">\s*(Retry|Purge|Abort)", page.text), path
        token = http.cookies["jobd_csrf"]
        for action, form in (
            ("/actions/dead", {"action": "purge", "jobs": f"default {dead_job}"}),
            ("/actions/abort", {"queue": "default", "id": dead_job}),
        ):
            refused = http.post(action, data={**form, "csrf": token})
            assert refused.status_code == 403 and "read-only" in refused.text
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        assert jobs.job(dead_job).status() == "failed"


def test_purge_all_and_abort(serve: Serve, dead_job: str, redis_url: str, key_prefix: str) -> None:
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        queued = jobs.enqueue("send_email", "x")
    served = serve()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        token = token_of(http)
        purged = http.post(
            "/actions/dead", data={"action": "purge", "queue": "default", "all": "1", "csrf": token}
        )
        assert purged.status_code == 303
        assert "Purged 1 dead job of queue default." in http.get(purged.headers["location"]).text
        aborted = http.post(
            "/actions/abort", data={"queue": "default", "id": queued.id, "csrf": token}
        )
        assert aborted.status_code == 303
        assert f"Aborted job {queued.id}." in http.get(aborted.headers["location"]).text
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        assert jobs.job(dead_job).status() == "not_found"
        assert jobs.job(queued.id).status() == "aborted"


def test_basic_auth(serve: Serve) -> None:
    served = serve(credentials=("ops", "s3cret-pw"))
    with httpx.Client(base_url=served.url, timeout=10) as http:
        refused = http.get("/")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith(
            "Basic"
        )
        assert http.get("/", auth=("ops", "wrong")).status_code == 401
        assert http.get("/static/jobd.css").status_code == 401
        page = http.get("/", auth=("ops", "s3cret-pw"))
        assert page.status_code == 200 and "s3cret-pw" not in page.text


def test_no_secret_is_shown(
    serve: Serve, redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBD_SIGNING_KEY", "k3y-signing-secret" * 3)
    password_url = redis_url.replace("redis://", "redis://jobd:hunter2-password@")
    settings = settings_for(password_url, key_prefix, worker={"signing_key": "${JOBD_SIGNING_KEY}"})
    served = serve(settings=settings)
    with httpx.Client(base_url=served.url, timeout=10) as http:
        for path in ("/", "/dead", "/workers", "/limits", "/cron", "/queues/default"):
            text = http.get(path).text
            assert "hunter2-password" not in text and "k3y-signing-secret" not in text
            assert "redis://jobd:***@" in text


def test_mounted_under_a_prefix_in_fastapi(serve: Serve, dead_job: str) -> None:
    def make_app(client: jobd.client.Client) -> FastAPI:
        app = FastAPI()

        @app.get("/")
        def home() -> dict[str, str]:
            return {"app": "host"}

        app.mount("/ops/jobd", jobd.web.create_app(client))
        return app

    served = serve(make_app=make_app)
    with httpx.Client(base_url=served.url, timeout=10) as http:
        assert http.get("/").json() == {"app": "host"}
        page = http.get("/ops/jobd/dead")
        assert page.status_code == 200
        hrefs = re.findall(r'(?:href|src|action)="([^"#]+)"', page.text)
        assert hrefs and all(h.startswith("/ops/jobd/") for h in hrefs), hrefs
        css = next(h for h in hrefs if "jobd.css" in h)
        assert http.get(css).status_code == 200
        assert "Path=/ops/jobd;" in page.headers["set-cookie"]
        token = http.cookies["jobd_csrf"]
        done = http.post(
            "/ops/jobd/actions/dead",
            data={"action": "retry", "jobs": f"default {dead_job}", "csrf": token,
                  "next": "/ops/jobd/dead?queue=default"},
        )  # fmt: skip
        assert done.status_code == 303
        assert done.headers["location"] == "/ops/jobd/dead?queue=default"
        # a "next" outside the dashboard is not followed
        token = http.cookies["jobd_csrf"]
        other = http.post(
            "/ops/jobd/actions/dead",
            data={"action": "retry", "jobs": f"default {dead_job}", "csrf": token,
                  "next": "https://evil.example/"},
        )  # fmt: skip
        assert other.headers["location"] == "/ops/jobd/dead"


def test_encrypted_jobs_are_shown_with_the_key_and_marked_without(
    serve: Serve, redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard's client decrypts with its keys (JOBD_ENCRYPTION_KEYS here); without them
    the lists say "encrypted (no key …)" and show no plaintext, never the envelope's text."""
    from jobd.crypto import key_id, new_key, parse_key

    key = new_key()
    monkeypatch.setenv("JOBD_ENCRYPTION_KEYS", key)
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        job = jobs.enqueue("send_email", "secret@example.com")
    with httpx.Client(base_url=serve().url, timeout=10) as http:
        assert "secret@example.com" in http.get("/queues/default").text
        assert "secret@example.com" in http.get("/queues/default/job", params={"id": job.id}).text
    monkeypatch.delenv("JOBD_ENCRYPTION_KEYS")
    with httpx.Client(base_url=serve().url, timeout=10) as http:
        listed = http.get("/queues/default").text
    assert "secret@example.com" not in listed
    assert f"encrypted (no key {key_id(parse_key(key))})" in listed
    assert "jobd-enc:" not in listed
