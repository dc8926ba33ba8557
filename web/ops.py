"""Operator endpoints: ``/metrics`` (Prometheus) and ``/v1/stats`` (queues and live workers).

``/metrics`` exports two kinds of metrics:

- counted by this web process: ``categorizer_jobs_submitted_total{kind}`` (accepted POSTs of
  jobs and catalogs; an idempotent replay is not counted again) and
  ``categorizer_http_requests_total{method,endpoint,status}``. Under gunicorn with several
  processes set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, wiped before each start):
  every process then writes its samples there and any process's ``/metrics`` answers their sum
  (prometheus-client multiprocess mode). Without it each process exports its own counts only.
- read from Redis on every scrape, the same in every process: ``categorizer_queue_depth{queue}``
  (``LLEN`` of each Celery queue), ``categorizer_workers_live``,
  ``categorizer_worker_model_version_info{worker,model_version}`` (from the workers'
  heartbeats), ``categorizer_cache_hits_total`` / ``categorizer_cache_misses_total`` (Redis
  counters, see ``worker.counters``).

The workers export their own metrics (completions, latency, batch sizes) on their own port: see
``worker.metrics``.
"""

from __future__ import annotations

import os
from collections import Counter as Tally

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from web.api import services
from worker import counters

bp = Blueprint("ops", __name__)

JOBS_SUBMITTED = Counter("categorizer_jobs_submitted_total", "Jobs accepted (202) by the API", ["kind"])
HTTP_REQUESTS = Counter("categorizer_http_requests_total", "HTTP requests answered", ["method", "endpoint", "status"])


def queue_names() -> list[str]:
    """The Celery queues the service declares (interactive, micro-batch, catalogs, ...)."""
    cfg = current_app.config
    configured = [cfg.get(key) for key in ("QUEUE", "BATCH_QUEUE", "CATALOG_QUEUE")]
    declared = [q.name for q in services().celery.conf.task_queues or ()]
    return list(dict.fromkeys(name for name in configured + declared if name))


def queue_depths() -> dict[str, int]:
    store = services().store
    names = queue_names()
    pipe = store.redis.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
    return {name: int(n) for name, n in zip(names, pipe.execute(), strict=True)}


def live_workers() -> list[dict]:
    return services().store.live_workers(current_app.config["WORKER_TTL"])


class _RedisCollector:
    """Gauges and counters computed from Redis at scrape time."""

    def __init__(self, depths: dict[str, int], workers: list[dict], totals: dict[str, int]):
        self.depths, self.workers, self.totals = depths, workers, totals

    def collect(self):
        depth = GaugeMetricFamily(
            "categorizer_queue_depth", "Messages waiting in a queue (Redis LLEN)", labels=["queue"]
        )
        for name, n in self.depths.items():
            depth.add_metric([name], n)
        yield depth
        yield GaugeMetricFamily("categorizer_workers_live", "Workers with a fresh heartbeat", value=len(self.workers))
        info = GaugeMetricFamily(
            "categorizer_worker_model_version_info",
            "1 per live worker and the model version it serves (heartbeat)",
            labels=["worker", "model_version"],
        )
        for w in self.workers:
            info.add_metric([w.get("hostname", ""), w.get("model_version") or ""], 1)
        yield info
        yield CounterMetricFamily(
            "categorizer_cache_hits",
            "Catalog texts answered from the result cache",
            value=self.totals[counters.CACHE_HITS_KEY],
        )
        yield CounterMetricFamily(
            "categorizer_cache_misses",
            "Catalog texts that needed the model (cache lookups that missed)",
            value=self.totals[counters.CACHE_MISSES_KEY] + self.totals[counters.CATALOG_INFERENCES_KEY],
        )


class _ProcessRegistry:
    """The process-global registry as one collector (single-process mode)."""

    def collect(self):
        return REGISTRY.collect()


@bp.get("/metrics")
def metrics():
    store = services().store
    registry = CollectorRegistry()
    mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if mp_dir:
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry, path=mp_dir)
    else:
        registry.register(_ProcessRegistry())
    registry.register(_RedisCollector(queue_depths(), live_workers(), counters.read_all(store.redis)))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@bp.get("/v1/stats")
def stats():
    """Queue depths and live workers with their model versions."""
    workers = live_workers()
    versions = Tally(w.get("model_version") or "unknown" for w in workers)
    return jsonify(
        queues=queue_depths(),
        workers=[
            {
                "hostname": w.get("hostname"),
                "model_version": w.get("model_version"),
                "queues": w.get("queues", []),
                "pid": w.get("pid"),
                "last_heartbeat_age_s": w.get("last_heartbeat_age_s"),
            }
            for w in sorted(workers, key=lambda w: w.get("hostname", ""))
        ],
        model_versions=dict(versions),
        review_threshold=current_app.config["REVIEW_THRESHOLD"],
    )


def _kind_of_submission() -> str | None:
    endpoint = request.endpoint or ""
    if request.method != "POST":
        return None
    if endpoint == "jobs.submit_job":
        return "job"
    if endpoint.startswith("catalogs.") and request.path.rstrip("/").endswith("/catalogs"):
        return "catalog"
    return None


def init_metrics(app: Flask) -> None:
    """Count requests and accepted submissions of ``app``."""

    @app.after_request
    def _count(response: Response) -> Response:
        endpoint = request.endpoint or "unmatched"
        if endpoint in ("ui.static", "ops.metrics"):
            return response
        HTTP_REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        kind = _kind_of_submission()
        if kind and response.status_code in (201, 202) and "Idempotent-Replayed" not in response.headers:
            JOBS_SUBMITTED.labels(kind).inc()
        return response
