"""Micro-batching (worker.batching): many single-product jobs, one model call, each job its own result.

Real Redis, real ``celery worker`` processes, real HTTP. Correctness only, no timing.
"""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from benchmarks.common import real_texts
from training.bundle import load_bundle
from web.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUEUES = ("interactive", "interactive-batch")
MICROBATCH = {"MICROBATCH": True, "MICROBATCH_MAX_PRODUCTS": 32}
BATCH_LINE = re.compile(r"microbatch jobs=(\d+) products=(\d+) skipped=(\d+) stored=(\d+)")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    try:
        return [t[:2000] for t in real_texts()[:200]]
    except FileNotFoundError:
        pytest.skip("no shared dataset")


@pytest.fixture(scope="module")
def expected(texts, models_dir):
    bundle = load_bundle(models_dir / (models_dir / "current").read_text().strip(), threads=1)
    return bundle.predict(texts), bundle.version


def submit_all(base_url: str, texts: list[str], threads: int = 32) -> list[str]:
    """Submit one single-product job per text concurrently; returns job ids in text order."""
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=threads))

    def one(k: int) -> str:
        resp = session.post(base_url + "/v1/jobs", json={"products": [{"id": f"p{k}", "text": texts[k]}]}, timeout=30)
        assert resp.status_code == 202, resp.text
        return resp.json()["job_id"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(len(texts))))


def check_results(client: Client, job_ids: list[str], expected) -> list[dict]:
    predictions, version = expected
    jobs = []
    for k, job_id in enumerate(job_ids):
        job = client.job(job_id).wait(timeout=60)
        (result,) = job.results()
        want = predictions[k]
        assert result["id"] == f"p{k}"
        assert result["category"] == want["category"], (k, result, want)
        assert result["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6), k
        assert result["model_version"] == version
        jobs.append(job.data)
    return jobs


def batch_sizes(log_path) -> list[int]:
    return [int(m.group(1)) for m in BATCH_LINE.finditer(log_path.read_text(errors="replace"))]


def test_200_concurrent_single_product_jobs_each_get_their_own_result(
    redis_factory, worker_factory, server_factory, texts, expected
):
    url = redis_factory().url()
    # a 50 ms window so that batches surely form even on a busy machine
    worker = worker_factory(url, queues=QUEUES, env={"CATEGORIZER_BATCH_MAX_WAIT_MS": "50"})
    server = server_factory(url, **MICROBATCH)
    job_ids = submit_all(server.url, texts)
    assert len(set(job_ids)) == len(texts)
    jobs = check_results(Client(server.url), job_ids, expected)
    assert all(j["status"] == "succeeded" and j["attempts"] == 1 for j in jobs)
    sizes = batch_sizes(worker.log_path)
    assert sum(sizes) == len(texts), sizes  # every job was in exactly one batch
    assert max(sizes) > 1, f"no batch of more than one job was formed: {sizes}"
    r = redis.Redis.from_url(url)
    assert r.llen("interactive-batch") == 0 and r.llen("interactive") == 0
    deadline = time.monotonic() + 10
    while r.hlen("unacked"):  # every message is acknowledged after its batch
        assert time.monotonic() < deadline, "messages left unacknowledged"
        time.sleep(0.05)


def test_micro_batching_off_routes_to_the_per_job_task(redis_factory, worker_factory, server_factory, texts, expected):
    url = redis_factory().url()
    worker = worker_factory(url, queues=("interactive",))
    server = server_factory(url, MICROBATCH=False)
    job_ids = submit_all(server.url, texts[:20], threads=8)
    check_results(Client(server.url), job_ids, (expected[0][:20], expected[1]))
    assert batch_sizes(worker.log_path) == []


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("where", ["buffered", "in_pool"])
def test_worker_killed_mid_batch_loses_no_job(where, redis_factory, worker_factory, server_factory, texts, expected):
    """``buffered``: the consumer holds the batch (long window) when the worker is killed.
    ``in_pool``: the batch was handed to the pool process (stopped, so it cannot finish)."""
    url = redis_factory().url()
    fast = {"CATEGORIZER_VISIBILITY_TIMEOUT": "3", "CATEGORIZER_RESTORE_INTERVAL": "1"}
    wait_ms = "5000" if where == "buffered" else "10"
    first = worker_factory(url, queues=QUEUES, env={**fast, "CATEGORIZER_BATCH_MAX_WAIT_MS": wait_ms})
    if where == "in_pool":
        pool = children(first.process.pid)
        assert pool, "the prefork worker has no pool process"
        for pid in pool:
            os.kill(pid, signal.SIGSTOP)
    server = server_factory(url, **MICROBATCH)
    n = 60
    job_ids = submit_all(server.url, texts[:n], threads=16)
    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    while r.hlen("unacked") < n:
        assert time.monotonic() < deadline, f"the worker reserved only {r.hlen('unacked')} of {n} messages"
        time.sleep(0.05)
    time.sleep(0.3)  # in_pool: the 10 ms window has flushed the batches to the (stopped) pool
    first.kill()  # SIGKILL the whole worker (main and pool) mid-batch
    assert batch_sizes(first.log_path) == []
    client = Client(server.url)
    assert all(client.job(j).refresh().status in ("queued", "running") for j in job_ids)

    second = worker_factory(url, queues=QUEUES, env=fast)
    jobs = check_results(client, job_ids, (expected[0][:n], expected[1]))
    assert all(j["status"] == "succeeded" for j in jobs)
    assert sum(batch_sizes(second.log_path)) >= n
    deadline = time.monotonic() + 20
    while r.hlen("unacked"):
        assert time.monotonic() < deadline, "redelivered messages were never acknowledged"
        time.sleep(0.05)
