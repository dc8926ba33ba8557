"""The production web server (gunicorn gthread, configured from the environment)."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest
import redis
import requests

from web.services import start_web, wait_http

pytestmark = pytest.mark.integration


def test_long_polls_do_not_block_submissions(redis_url, tmp_path):
    queue = f"test-idle-{uuid.uuid4().hex[:8]}"  # no worker: jobs stay queued
    web = start_web(
        redis_url, env={"CATEGORIZER_QUEUE": queue, "CATEGORIZER_MAX_WAIT": "4"}, log_path=tmp_path / "web.log"
    )
    try:
        wait_http(web.url + "/healthz", process=web)
        job = requests.post(web.url + "/v1/jobs", json={"products": [{"text": "x"}]}, timeout=10).json()
        url = f"{web.url}/v1/jobs/{job['job_id']}"
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            polls = [pool.submit(requests.get, url, params={"wait": 30}, timeout=30) for _ in range(40)]
            # while 40 clients wait, submissions and reads are answered
            for _ in range(5):
                resp = requests.post(web.url + "/v1/jobs", json={"products": [{"text": "y"}]}, timeout=5)
                assert resp.status_code == 202
                assert requests.get(web.url + resp.headers["Location"], timeout=5).json()["status"] == "queued"
            answers = [p.result() for p in polls]
        assert all(a.status_code == 200 and a.json()["status"] == "queued" for a in answers)
    finally:
        web.stop()
        redis.Redis.from_url(redis_url).delete(queue)
