"""Celery tasks. Imported by ``celery worker`` only (the web tier sends tasks by name)."""

from __future__ import annotations

import json
import logging
import os

import redis
from celery.exceptions import SoftTimeLimitExceeded
from celery.worker.request import Request

from worker import faults, model
from worker.celery_app import CATEGORIZE_TASK, app
from worker.jobstore import EXHAUSTED, FAILED, FINAL_STATES, SUCCEEDED, JobStore, connect, exhausted_error

log = logging.getLogger("categorizer.worker")

_store: tuple[int, JobStore] | None = None


def job_store() -> JobStore:
    """This process's job store (a Redis connection pool is never shared across a fork)."""
    global _store
    if _store is None or _store[0] != os.getpid():
        _store = (os.getpid(), JobStore(connect(app.conf.broker_url)))
    return _store[1]


class JobRequest(Request):
    """Fails the job when the hard time limit killed the pool process running it.

    Runs in the worker's main process (the pool process is gone, so the task cannot record it);
    the message is then acknowledged by Celery, so the job must be final here or it would stay
    ``running`` forever. The finish is idempotent: a job already final is left alone.
    """

    def on_timeout(self, soft, timeout):
        super().on_timeout(soft, timeout)
        if soft or not self.args:
            return
        job_id = self.args[0]
        try:
            job_store().finish(job_id, FAILED, error=f"time limit exceeded: the task was stopped after {timeout} s")
            log.error("job_failed job_id=%s reason=hard_time_limit seconds=%s", job_id, timeout)
        except redis.exceptions.RedisError:
            log.exception("job_fail_not_recorded job_id=%s", job_id)


def job_results(products: list[dict], predictions: list[dict], version: str) -> list[dict]:
    """The stored results of one job: each product's client id, prediction and model version."""
    return [
        {
            "id": product.get("id"),
            "category": pred["category"],
            "confidence": pred["confidence"],
            "probabilities": pred["probabilities"],
            "model_version": version,
        }
        for product, pred in zip(products, predictions, strict=True)
    ]


REDIS_RETRIED = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


@app.task(
    name=CATEGORIZE_TASK,
    Request=JobRequest,
    autoretry_for=REDIS_RETRIED,
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=10,
)
def categorize(job_id: str, products: list[dict] | None = None) -> dict:
    """Categorize the products of job ``job_id`` in one batched model call.

    ``products`` (``[{"id": optional, "text": str}]``, validated) may travel in the message;
    by default they are read from the job's stored input (see ``worker.jobstore``).
    The outcome is stored in the job record exactly once; a redelivered message for a job
    that is already final (or expired) does nothing.
    """
    store = job_store()
    try:
        return _categorize(store, job_id, products)
    except REDIS_RETRIED:
        raise  # autoretry: the job stays queued/running until Redis is back
    except SoftTimeLimitExceeded as exc:
        log.error("job_failed job_id=%s reason=soft_time_limit", job_id)
        limit = app.conf.task_soft_time_limit
        return _fail(store, job_id, f"time limit exceeded: the task ran longer than {limit} s ({exc!r})")
    except Exception as exc:  # anything else fails the job visibly instead of leaving it running
        log.exception("job_failed job_id=%s", job_id)
        return _fail(store, job_id, f"{type(exc).__name__}: {exc}")


def _categorize(store: JobStore, job_id: str, products: list[dict] | None) -> dict:
    status = store.mark_running(job_id)
    if status is None:
        log.warning("job_skipped job_id=%s reason=unknown_or_expired", job_id)
        return {"job_id": job_id, "skipped": "unknown or expired"}
    if status == EXHAUSTED:
        log.error("job_failed job_id=%s reason=too_many_deliveries", job_id)
        return _fail(store, job_id, exhausted_error())
    if status in FINAL_STATES:
        log.info("job_skipped job_id=%s reason=already_%s", job_id, status)
        return {"job_id": job_id, "skipped": f"already {status}"}
    if products is None:
        products = store.load_products(job_id)
        if products is None:
            return _fail(store, job_id, "the job's input has expired")
    texts = [p["text"] for p in products]
    faults.delay_point(job_id)  # test-only fault injection, off unless the worker env sets it
    predictions, version = model.categorize(job_id, texts)
    results = job_results(products, predictions, version)
    stored = store.finish(job_id, SUCCEEDED, json.dumps(results, separators=(",", ":")), version)
    return {"job_id": job_id, "status": SUCCEEDED, "count": len(results), "stored": stored}


def _fail(store: JobStore, job_id: str, error: str) -> dict:
    """Fail the job (idempotent); a Redis error here is logged: the job then expires with its record."""
    try:
        store.finish(job_id, FAILED, error=error)
    except redis.exceptions.RedisError:
        log.exception("job_fail_not_recorded job_id=%s", job_id)
    return {"job_id": job_id, "status": FAILED}
