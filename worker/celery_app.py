"""The Celery application: broker, result backend, serialization, acknowledgement and queues.

This module is imported by the web tier (to send tasks by name) and by workers. It must stay
light: no ONNX Runtime, no TensorFlow, no model code. The task module (``worker.tasks``) is
listed in ``include`` and is imported by ``celery worker`` only.

Settings (environment):

``REDIS_URL``                         broker and result backend (default ``redis://localhost:6379/0``)
``CATEGORIZER_VISIBILITY_TIMEOUT``    seconds before an unacknowledged message is delivered again
                                      (default 3600; short in fault tests)
``CATEGORIZER_RESTORE_INTERVAL``      seconds between a worker's sweeps for such messages (default 10)
``CATEGORIZER_RESULT_EXPIRES``        seconds Celery keeps its own task results (default 3600)
``CATEGORIZER_PREFETCH_MULTIPLIER``   messages reserved per worker process (default 1)
``CATEGORIZER_TASK_SOFT_TIME_LIMIT``  seconds a task may run before it is interrupted and its job
                                      fails with reason "time limit exceeded" (default 120, 0 = none)
``CATEGORIZER_TASK_TIME_LIMIT``       seconds after which the pool process running a task is killed
                                      and replaced; its job fails the same way (default 150, 0 = none)
"""

from __future__ import annotations

import math
import os

from celery import Celery
from kombu import Queue

DEFAULT_REDIS_URL = "redis://localhost:6379/0"

#: Queue for interactive jobs (``POST /v1/jobs``). Bulk catalogs get their own queue, so that a
#: big catalog never starves interactive requests.
INTERACTIVE_QUEUE = "interactive"

#: Queue for small interactive jobs when micro-batching is on (see ``worker.batching``).
BATCH_QUEUE = "interactive-batch"

#: Queue for catalog chunks (``POST /v1/catalogs``, see ``worker.catalog_tasks``). Workers that
#: consume it and an interactive queue take from both in turn (kombu rotates the queues it
#: polls), so a huge catalog delays an interactive job by about one chunk at most.
CATALOG_QUEUE = "catalog"

#: Explicit task names: the web tier sends tasks by name and never imports ``worker.tasks``.
CATEGORIZE_TASK = "categorizer.categorize"
CATEGORIZE_BATCH_TASK = "categorizer.categorize_batch"
CATALOG_CHUNK_TASK = "categorizer.catalog_chunk"


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected a number") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name}={value!r}: expected a number >= 0")
    return number


def _env_seconds(name: str, default: float) -> float | None:
    """A number of seconds from the environment; 0 means "no limit" (None)."""
    seconds = _env_number(name, default)
    return seconds if seconds > 0 else None


def _env_int(name: str, default: int) -> int:
    number = _env_number(name, default)
    if number != int(number):
        raise ValueError(f"{name}={os.environ.get(name)!r}: expected a whole number")
    return int(number)


def redis_url_from_env() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def make_celery(redis_url: str | None = None) -> Celery:
    """A configured Celery app for ``redis_url`` (default: ``REDIS_URL``)."""
    url = redis_url or redis_url_from_env()
    app = Celery(
        "categorizer", broker=url, backend=url, include=["worker.tasks", "worker.batching", "worker.catalog_tasks"]
    )
    app.conf.update(
        # JSON only: nothing is ever pickled.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # At-least-once: acknowledge after the task ran, and deliver again when the process
        # running it dies. Results are written idempotently (see worker.jobstore).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Not True: on a lost broker connection Celery would then cancel the running tasks and
        # record the cancellation in the result backend, which is the same (unreachable) Redis;
        # that raises in the consumer and the worker exits ("Unrecoverable error: ConnectionError",
        # reproduced by tests/integration/test_worker_faults.py::
        # test_redis_restart_with_queued_jobs_web_and_worker_reconnect). Left running, a task
        # finishes (or retries); its message, still unacknowledged in Redis, is delivered again
        # after the visibility timeout and the idempotent finish ignores it.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # A stuck task never holds a pool process (and its job) forever: the soft limit raises
        # SoftTimeLimitExceeded in the task (the job fails with a reason); the hard limit kills
        # the pool process (worker.tasks.JobRequest then fails the job from the main process).
        task_soft_time_limit=_env_seconds("CATEGORIZER_TASK_SOFT_TIME_LIMIT", 120),
        task_time_limit=_env_seconds("CATEGORIZER_TASK_TIME_LIMIT", 150),
        # Every interactive task already carries a whole batch of products, so one reserved
        # message per process is enough and keeps a long job from holding messages that an
        # idle process could take.
        worker_prefetch_multiplier=_env_int("CATEGORIZER_PREFETCH_MULTIPLIER", 1),
        broker_transport_options={
            "visibility_timeout": _env_int("CATEGORIZER_VISIBILITY_TIMEOUT", 3600),
            # How often a worker looks for unacknowledged messages older than the visibility
            # timeout (kombu's default sweep is 10 s x throttle 10 = ~100 s).
            "unacked_restore_interval": _env_int("CATEGORIZER_RESTORE_INTERVAL", 10),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        # The service keeps its own job records; Celery's results are a small summary only.
        result_expires=_env_int("CATEGORIZER_RESULT_EXPIRES", 3600),
        task_default_queue=INTERACTIVE_QUEUE,
        task_queues=(
            Queue(INTERACTIVE_QUEUE, routing_key=INTERACTIVE_QUEUE),
            Queue(BATCH_QUEUE, routing_key=BATCH_QUEUE),
            Queue(CATALOG_QUEUE, routing_key=CATALOG_QUEUE),
        ),
        task_routes={
            CATEGORIZE_TASK: {"queue": INTERACTIVE_QUEUE},
            CATEGORIZE_BATCH_TASK: {"queue": BATCH_QUEUE},
            CATALOG_CHUNK_TASK: {"queue": CATALOG_QUEUE},
        },
        task_track_started=False,
        worker_send_task_events=False,
        timezone="UTC",
        enable_utc=True,
    )
    # Prometheus exporter of the workers (signal handlers; on when CATEGORIZER_WORKER_METRICS_PORT is set)
    app.conf.include = [*app.conf.include, "worker.metrics"]
    from worker.heartbeat import Heartbeat

    app.steps["consumer"].add(Heartbeat)
    from worker.batch_prefetch import BatchPrefetch

    app.steps["consumer"].add(BatchPrefetch)
    return app


#: The app ``celery -A worker.celery_app worker`` runs.
app = make_celery()
celery = app
