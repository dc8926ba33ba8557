"""Operator features against real Redis, real Celery workers and real HTTP: metrics on the web tier
and from the workers, /v1/stats, and the needs_review threshold."""

from __future__ import annotations

import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.samples import OBVIOUS
from training.bundle import read_current
from web.services import free_port, start_web, wait_http

pytestmark = pytest.mark.integration

PRODUCTS = [{"id": pid, "text": text} for pid, text, _ in OBVIOUS]


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of a Prometheus text endpoint."""
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_until(url: str, ready, timeout: float = 15.0) -> dict:
    """Scrape until ``ready(samples)``: a worker counts a job in ``task_postrun``, just after the
    result is stored (and a long-poll already answered)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def run_job(base_url: str, products=PRODUCTS) -> dict:
    resp = requests.post(base_url + "/v1/jobs", json={"products": products}, timeout=10)
    assert resp.status_code == 202, resp.text
    job = requests.get(base_url + resp.headers["Location"], params={"wait": 20}, timeout=30).json()
    assert job["status"] in ("succeeded", "failed"), job
    return job


@pytest.fixture
def private_redis(redis_factory) -> str:
    """A Redis of this test's own: its worker is the only one that takes its jobs."""
    return redis_factory(appendonly=False).url()


def test_metrics_appear_and_move_when_jobs_run(private_redis, worker_factory, server_factory, models_dir):
    port = free_port()
    worker = worker_factory(private_redis, env={"CATEGORIZER_WORKER_METRICS_PORT": str(port)})
    server = server_factory(private_redis)
    web_metrics, worker_metrics = server.url + "/metrics", f"http://127.0.0.1:{port}/metrics"

    web_before, worker_before = scrape(web_metrics), scrape(worker_metrics)
    job = run_job(server.url)
    assert job["status"] == "succeeded"
    completed = "categorizer_jobs_completed_total"
    latency = "categorizer_job_latency_seconds_count"
    # the counter and the histogram live in separate files of the multiprocess directory, read in
    # directory order: wait until the scrape shows both
    worker_after = scrape_until(
        worker_metrics,
        lambda s: (
            value(s, completed, kind="job") > value(worker_before, completed, kind="job")
            and value(s, latency, kind="job") > value(worker_before, latency, kind="job")
        ),
    )
    web_after = scrape(web_metrics)

    # web tier: submissions by kind, and state read from Redis on the scrape
    submitted = "categorizer_jobs_submitted_total"
    assert value(web_after, submitted, kind="job") == value(web_before, submitted, kind="job") + 1
    assert ("categorizer_queue_depth", (("queue", "interactive"),)) in web_after
    assert value(web_after, "categorizer_workers_live") >= 1
    version = read_current(models_dir)
    assert value(web_after, "categorizer_worker_model_version_info", worker=worker.hostname, model_version=version) == 1
    assert ("categorizer_cache_hits_total", ()) in web_after
    assert ("categorizer_cache_misses_total", ()) in web_after

    # workers: completions, submit-to-result latency, batch size and model latency, model version
    def moved(name, by=1, **labels):
        return value(worker_after, name, **labels) - value(worker_before, name, **labels) == by

    assert moved("categorizer_jobs_completed_total", kind="job")
    assert moved("categorizer_job_latency_seconds_count", kind="job")
    assert value(worker_after, "categorizer_job_latency_seconds_sum", kind="job") > 0
    assert moved("categorizer_batch_size_count")
    assert moved("categorizer_batch_size_sum", by=len(PRODUCTS))
    assert moved("categorizer_model_latency_seconds_count")
    assert value(worker_after, "categorizer_model_version_info", model_version=version) == 1
    assert value(worker_after, "categorizer_jobs_failed_total", kind="job") == 0


def test_failed_jobs_are_counted(redis_factory, worker_factory, server_factory, tmp_path):
    redis_url = redis_factory(appendonly=False).url()
    port = free_port()
    empty_models = tmp_path / "no-models"
    empty_models.mkdir()
    # a worker without any model bundle: it runs, and fails every job visibly
    worker_factory(
        redis_url,
        env={"CATEGORIZER_WORKER_METRICS_PORT": str(port), "CATEGORIZER_MODEL_DIR": str(empty_models)},
    )
    server = server_factory(redis_url)
    job = run_job(server.url)
    assert job["status"] == "failed"
    samples = scrape_until(
        f"http://127.0.0.1:{port}/metrics", lambda s: value(s, "categorizer_jobs_failed_total", kind="job") > 0
    )
    assert value(samples, "categorizer_jobs_failed_total", kind="job") == 1
    assert value(samples, "categorizer_jobs_completed_total", kind="job") == 0


def test_gunicorn_processes_share_their_counts(private_redis, tmp_path):
    """Two gunicorn processes with PROMETHEUS_MULTIPROC_DIR: any process's /metrics has the sum."""
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    web = start_web(
        private_redis,
        workers=2,
        threads=4,
        env={"PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "CATEGORIZER_QUEUE": "no-worker-here"},
        log_path=tmp_path / "web.log",
    )
    try:
        wait_http(web.url + "/healthz", process=web)
        n = 12
        for _ in range(n):
            # a new connection each time: the kernel spreads them over both processes
            resp = requests.post(web.url + "/v1/jobs", json={"products": [{"text": "x"}]}, timeout=10)
            assert resp.status_code == 202
        for _ in range(6):  # whichever process answers the scrape
            samples = scrape(web.url + "/metrics")
            assert value(samples, "categorizer_jobs_submitted_total", kind="job") == n
            assert value(samples, "categorizer_queue_depth", queue="no-worker-here") == n
        assert list(mp_dir.glob("*.db")), "the processes wrote no multiprocess files"
    finally:
        web.stop()


def test_stats_report_a_running_worker(api, worker, models_dir):
    resp = api.get("/v1/stats")
    assert resp.status_code == 200
    stats = resp.json()
    assert "interactive" in stats["queues"] and stats["queues"]["interactive"] >= 0
    mine = [w for w in stats["workers"] if w["hostname"] == worker.hostname]
    assert mine, stats
    version = read_current(models_dir)
    assert mine[0]["model_version"] == version
    assert "interactive" in mine[0]["queues"]
    assert stats["model_versions"].get(version, 0) >= 1


def test_needs_review_follows_the_threshold(redis_url, worker, server_factory, api):
    """Three servers on one Redis and one worker read the same job with different thresholds."""
    resp = api.post("/v1/jobs", json={"products": PRODUCTS})
    assert resp.status_code == 202
    location = resp.headers["Location"]
    default = api.get(location, params={"wait": 20}).json()
    assert default["status"] == "succeeded"
    for r in default["results"]:
        assert r["needs_review"] is (r["confidence"] < 0.9)

    never = server_factory(redis_url, REVIEW_THRESHOLD=0.0)
    always = server_factory(redis_url, REVIEW_THRESHOLD=1.01)
    lax = requests.get(never.url + location, timeout=10).json()["results"]
    strict = requests.get(always.url + location, timeout=10).json()["results"]
    assert [r["needs_review"] for r in lax] == [False] * len(PRODUCTS)
    assert [r["needs_review"] for r in strict] == [True] * len(PRODUCTS)
    # only the flag differs
    strip = [{k: v for k, v in r.items() if k != "needs_review"} for r in default["results"]]
    assert [{k: v for k, v in r.items() if k != "needs_review"} for r in strict] == strip


def test_web_page_and_its_files_are_served(api):
    page = api.get("/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert 'id="product-text"' in page.text and 'id="catalog-file"' in page.text
    for name, ctype in (("app.js", "javascript"), ("style.css", "text/css")):
        resp = api.get(f"/static/{name}")
        assert resp.status_code == 200 and ctype in resp.headers["Content-Type"]


def test_catalog_metrics(redis_factory, worker_factory, server_factory):
    redis_url = redis_factory(appendonly=False).url()
    port = free_port()
    worker_factory(redis_url, queues=("interactive", "catalog"), env={"CATEGORIZER_WORKER_METRICS_PORT": str(port)})
    server = server_factory(redis_url)
    # the web counters live in this test process's registry, shared with the other live servers
    submitted_before = value(scrape(server.url + "/metrics"), "categorizer_jobs_submitted_total", kind="catalog")
    body = "id,text\n" + "".join(f'{pid},"{text}"\n' for pid, text, _ in OBVIOUS)
    resp = requests.post(server.url + "/v1/catalogs", data=body, headers={"Content-Type": "text/csv"}, timeout=10)
    assert resp.status_code == 202, resp.text
    location = server.url + resp.headers["Location"]
    deadline = time.monotonic() + 30
    while (catalog := requests.get(location, timeout=10).json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, catalog
        time.sleep(0.1)
    assert catalog["status"] == "succeeded"
    samples = scrape_until(
        f"http://127.0.0.1:{port}/metrics", lambda s: value(s, "categorizer_jobs_completed_total", kind="catalog") > 0
    )
    assert value(samples, "categorizer_jobs_completed_total", kind="catalog") == 1
    assert value(samples, "categorizer_job_latency_seconds_count", kind="catalog") == 1
    web = scrape(server.url + "/metrics")
    assert value(web, "categorizer_jobs_submitted_total", kind="catalog") - submitted_before == 1
    assert value(web, "categorizer_cache_misses_total") == len(OBVIOUS)  # a new Redis: every text ran the model
    assert ("categorizer_queue_depth", (("queue", "catalog"),)) in web
