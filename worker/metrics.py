"""Prometheus metrics of the workers, served by a small exporter in the worker's main process.

Enabled by ``CATEGORIZER_WORKER_METRICS_PORT`` (``categorizer worker --metrics-port``); unset or
``0`` disables them (no overhead, no port). Celery's prefork pool runs tasks in child processes,
so the metrics use prometheus-client's *multiprocess mode*: every process writes its samples to
memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory unless that
variable is set), and the main process serves their aggregate at ``http://<host>:<port>/metrics``.
The exporter starts on ``worker_init``, before the pool forks; the files of a pool process that
exits are kept for counters and histograms and dropped for its live gauges.

Metrics (all prefixed ``categorizer_``):

``jobs_completed_total{kind}``          jobs that succeeded (kind: ``job`` or ``catalog``)
``jobs_failed_total{kind}``             jobs that failed
``job_latency_seconds{kind}``           histogram: submit (``submitted_at``) to result (``finished_at``)
``batch_size``                          histogram: texts per model call
``model_latency_seconds``               histogram: duration of one model call
``model_version_info{model_version}``   1 for the model version a live pool process serves

Jobs are counted from Celery signals: ``task_prerun`` notes the job ids of a task (``args[0]``
of ``categorizer.categorize``, or of every request of a micro-batch task), ``task_postrun``
reads their records in one Redis pipeline and counts those this task finished (``finished_at``
after the task started; a redelivered job that was already final is not counted twice). Model
calls are observed through ``worker.model.BATCH_HOOKS``. A catalog (kind ``catalog``) is counted
by the chunk task (``categorizer.catalog_chunk``, args ``(catalog_id, chunk)``) that made it final,
once (a Redis ``SET NX`` marker). Other tasks can call ``observe_job(kind, status, latency_s)``.

This module imports neither ONNX Runtime nor prometheus-client at import time (the client must
be imported only after ``PROMETHEUS_MULTIPROC_DIR`` is set).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import tempfile
import time
from datetime import datetime

from celery import signals

log = logging.getLogger("categorizer.worker")

PORT_ENV = "CATEGORIZER_WORKER_METRICS_PORT"
PREFIX = "categorizer_"

#: Histogram buckets.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
MODEL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

#: Task name -> kind, for counting by ``task_postrun`` (catalog chunks count their catalog once).
JOB_TASKS = {"categorizer.categorize": "job", "categorizer.categorize_batch": "job"}
CATALOG_CHUNK_TASK = "categorizer.catalog_chunk"


class _Metrics:
    def __init__(self):
        from prometheus_client import Counter, Gauge, Histogram

        self.completed = Counter(PREFIX + "jobs_completed_total", "Jobs that succeeded", ["kind"])
        self.failed = Counter(PREFIX + "jobs_failed_total", "Jobs that failed", ["kind"])
        self.latency = Histogram(
            PREFIX + "job_latency_seconds",
            "Seconds from submission to result (submitted_at to finished_at)",
            ["kind"],
            buckets=LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(PREFIX + "batch_size", "Texts per model call", buckets=BATCH_BUCKETS)
        self.model_latency = Histogram(
            PREFIX + "model_latency_seconds", "Seconds per model call (one batch)", buckets=MODEL_BUCKETS
        )
        self.model_version = Gauge(
            PREFIX + "model_version_info",
            "1 for the model version served by live worker processes",
            ["model_version"],
            multiprocess_mode="livemax",
        )
        self.version: str | None = None


_metrics: _Metrics | None = None
_own_dir: str | None = None
_started: dict[str, float] = {}  # task id -> wall clock at prerun (this process)
_tasks_jobs: dict[str, tuple[str, list[str]]] = {}  # task id -> (kind, job ids)


def metrics_port() -> int:
    raw = os.environ.get(PORT_ENV, "")
    return int(raw) if raw.strip() else 0


def enabled() -> bool:
    return _metrics is not None


# -- exporter --------------------------------------------------------------------------------


def setup(port: int | None = None) -> int | None:
    """Prepare multiprocess mode and start the exporter on ``port``. Returns the port, or None."""
    global _metrics, _own_dir
    port = metrics_port() if port is None else port
    if not port or _metrics is not None:
        return None
    mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not mp_dir:
        mp_dir = _own_dir = tempfile.mkdtemp(prefix="categorizer-worker-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = mp_dir
    else:  # one worker per directory: clear what an earlier run left
        os.makedirs(mp_dir, exist_ok=True)
        for path in glob.glob(os.path.join(mp_dir, "*.db")):
            with contextlib.suppress(OSError):
                os.remove(path)
    from prometheus_client import CollectorRegistry, start_http_server, values
    from prometheus_client.multiprocess import MultiProcessCollector

    if not isinstance(values.ValueClass, type(values.MultiProcessValue())):
        # prometheus-client was imported before the variable was set: switch it now, before
        # any metric of ours exists.
        values.ValueClass = values.MultiProcessValue()
    _metrics = _Metrics()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=mp_dir)
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        log.warning("metrics_exporter_failed port=%s error=%s", port, exc)
        return None
    log.info("metrics_exporter port=%s multiproc_dir=%s", port, mp_dir)
    return port


@signals.worker_init.connect
def _on_worker_init(**_kwargs) -> None:
    try:
        setup()
    except Exception:  # metrics must never stop a worker from working
        log.exception("metrics_setup_failed")


@signals.worker_process_shutdown.connect
def _on_process_shutdown(pid=None, **_kwargs) -> None:
    if _metrics is None:
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(Exception):
        multiprocess.mark_process_dead(pid or os.getpid())


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_kwargs) -> None:
    if _own_dir:
        shutil.rmtree(_own_dir, ignore_errors=True)


# -- observations ----------------------------------------------------------------------------


def observe_job(kind: str, status: str, latency_s: float | None = None) -> None:
    """Count one finished job of ``kind`` (``job``/``catalog``) with status succeeded/failed."""
    if _metrics is None:
        return
    if latency_s is not None:
        _metrics.latency.labels(kind).observe(max(latency_s, 0.0))  # clock steps can make it negative
    (_metrics.completed if status == "succeeded" else _metrics.failed).labels(kind).inc()


def observe_batch(size: int, seconds: float, model_version: str, **_extra) -> None:
    """A model call: ``size`` texts in ``seconds`` with ``model_version`` (a ``BATCH_HOOKS`` hook)."""
    m = _metrics
    if m is None:
        return
    m.batch_size.observe(size)
    m.model_latency.observe(seconds)
    if model_version != m.version:
        if m.version is not None:
            m.model_version.labels(m.version).set(0)
        m.model_version.labels(model_version).set(1)
        m.version = model_version


def _parse_time(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _job_ids(args) -> list[str]:
    if not args:
        return []
    first = args[0]
    if isinstance(first, str):
        return [first]
    if isinstance(first, list | tuple):  # a micro-batch: requests whose args[0] is a job id
        ids = []
        for req in first:
            req_args = getattr(req, "args", None)
            if req_args and isinstance(req_args[0], str):
                ids.append(req_args[0])
        return list(dict.fromkeys(ids))
    return []


def _kind(task_name: str) -> str | None:
    if task_name in JOB_TASKS:
        return JOB_TASKS[task_name]
    if task_name == CATALOG_CHUNK_TASK:
        return "catalog"
    return None


def _observe_catalog(client, catalog_id: str, started: float) -> None:
    """Count a catalog once, by the chunk task that made it final (chunks run in parallel: the
    first to claim the marker counts it)."""
    from worker.catalog_store import catalog_key

    status, submitted_at, finished_at = client.hmget(catalog_key(catalog_id), ["status", "submitted_at", "finished_at"])
    finished = _parse_time(finished_at)
    if status not in ("succeeded", "failed") or finished is None or finished < started - 0.001:
        return
    if not client.set(f"categorizer:metrics:catalog_counted:{catalog_id}", 1, nx=True, ex=7 * 86400):
        return
    submitted = _parse_time(submitted_at)
    observe_job("catalog", status, finished - submitted if submitted is not None else None)


@signals.task_prerun.connect
def _on_prerun(task_id=None, task=None, args=None, **_kwargs) -> None:
    if _metrics is None or task is None:
        return
    kind = _kind(task.name)
    if kind is None:
        return
    _started[task_id] = time.time()
    _tasks_jobs[task_id] = (kind, _job_ids(args))


@signals.task_postrun.connect
def _on_postrun(task_id=None, **_kwargs) -> None:
    started = _started.pop(task_id, None)
    kind, job_ids = _tasks_jobs.pop(task_id, (None, []))
    if _metrics is None or started is None or not job_ids:
        return
    try:
        from worker.jobstore import job_key
        from worker.tasks import job_store

        client = job_store().redis
        if kind == "catalog":
            _observe_catalog(client, job_ids[0], started)
            return
        pipe = client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(job_key(job_id), ["status", "submitted_at", "finished_at"])
        for status, submitted_at, finished_at in pipe.execute():
            finished = _parse_time(finished_at)
            if status not in ("succeeded", "failed") or finished is None or finished < started - 0.001:
                continue  # still queued (retry), or finished by an earlier delivery
            submitted = _parse_time(submitted_at)
            observe_job(kind, status, finished - submitted if submitted is not None else None)
    except Exception as exc:  # never fail a task because of metrics
        log.warning("metrics_postrun_failed task_id=%s error=%s", task_id, exc)


def _register_batch_hook() -> None:
    from worker import model

    hooks = getattr(model, "BATCH_HOOKS", None)
    if hooks is not None and observe_batch not in hooks:
        hooks.append(observe_batch)


_register_batch_hook()
