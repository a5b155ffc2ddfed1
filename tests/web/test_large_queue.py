"""A queue of 1,000,000 jobs: its page and the overview render what Redis holds, reading a page's
worth of it (a size, not a timing: `python -m bench.web` measures the time)."""

from __future__ import annotations

import re

import httpx
import pytest
import redis

from bench.web import fill_deep_queue
from jobd.redis.keys import QueueKeys
from jobd.web.jobs import FILTER_WINDOW, PAGE_SIZE
from tests.web.conftest import Serve

DEPTH = 1_000_000


@pytest.mark.slow
def test_a_million_queued_jobs(serve: Serve, redis_url: str, key_prefix: str) -> None:
    connection = redis.Redis.from_url(redis_url)
    newest: list[str] = []
    try:
        newest = fill_deep_queue(connection, key_prefix, DEPTH, FILTER_WINDOW + PAGE_SIZE)
        assert connection.zcard(QueueKeys(key_prefix, "default").queued) == DEPTH
        served = serve()
        with httpx.Client(base_url=served.url, timeout=30) as http:
            overview = http.get("/").text
            row = re.search(r'<tr data-queue="default">(.*?)</tr>', overview, re.S)
            assert row and re.search(r'data-state="queued"><a [^>]*>1,000,000</a>', row[1])
            assert '<div class="stat-value" data-total="queued">1,000,000</div>' in overview

            page = http.get("/queues/default").text
            ids = re.findall(r'href="/queues/default/job\?id=(job-\d+)"', page)
            assert ids == newest[:PAGE_SIZE]  # the newest page, in order
            assert "1\u201350 of 1,000,000" in page
            assert "offset=50" in page  # the next page

            filtered = http.get("/queues/default", params={"function": "resize_image"}).text
            shown = re.findall(r'href="/queues/default/job\?id=(job-\d+)"', filtered)
            assert len(shown) == PAGE_SIZE
            assert "looked at jobs 1\u2013" in filtered and "of 1,000,000" in filtered

            deep = http.get("/queues/default", params={"offset": DEPTH - 10}).text
            assert "999,991\u20131,000,000 of 1,000,000" in deep
            assert "job-0000000" in deep  # the oldest, last
    finally:
        keys = QueueKeys(key_prefix, "default")
        connection.unlink(keys.queued, keys.seq, *(keys.job(job_id) for job_id in newest))
        connection.close()
