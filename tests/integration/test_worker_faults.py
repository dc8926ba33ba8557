"""At-least-once delivery: a job whose worker is SIGKILLed is delivered again and finishes once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from tests.integration.samples import BUCKET, NOVEL
from web.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST_REDELIVERY = {"CATEGORIZER_VISIBILITY_TIMEOUT": "2", "CATEGORIZER_RESTORE_INTERVAL": "1"}


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_job_survives_sigkill_of_its_worker(redis_factory, worker_factory, server_factory):
    server_redis = redis_factory()
    url = server_redis.url()
    first = worker_factory(url, env=FAST_REDELIVERY)
    pool = children(first.process.pid)
    assert pool, "the prefork worker has no pool process"
    for pid in pool:  # the pool cannot run the task: the message stays reserved, unacknowledged
        os.kill(pid, signal.SIGSTOP)
    client = Client(server_factory(url).url)
    job = client.submit([{"id": "k", "text": BUCKET[1]}])
    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    while r.hlen("unacked") == 0:
        assert time.monotonic() < deadline, "the worker never reserved the message"
        time.sleep(0.05)
    first.kill()  # SIGKILL the whole worker (main and pool): no ack, no requeue on shutdown
    assert job.refresh().status == "queued"

    worker_factory(url, env=FAST_REDELIVERY)
    results = job.wait(timeout=60).results()
    assert [(r["id"], r["category"]) for r in results] == [("k", "Household")]
    assert job.data["attempts"] == 1
    # and the redelivered message is acknowledged (just after the result is written)
    deadline = time.monotonic() + 20
    while r.hlen("unacked"):
        assert time.monotonic() < deadline, "the redelivered message was never acknowledged"
        time.sleep(0.05)


def test_queued_job_survives_a_redis_restart(tmp_path, server_factory, worker_factory):
    """The embedded mode's promise: Redis persists (AOF) in the data dir, queued jobs survive."""
    from web.services import RedisServer

    data_dir = tmp_path / "redis"
    first = RedisServer(data_dir).start()
    try:
        job = Client(server_factory(first.url()).url).submit([{"id": "q", "text": NOVEL[1]}])
        assert job.status == "queued"  # no worker yet
    finally:
        first.stop()  # SIGTERM: redis-server flushes the append-only file
    second = RedisServer(data_dir).start()  # another port, same data
    try:
        worker_factory(second.url())
        job = Client(server_factory(second.url()).url).job(job.id).wait(timeout=60)
        assert [(r["id"], r["category"]) for r in job.results()] == [("q", "Books")]
    finally:
        second.stop()
