"""Micro-batching: many small interactive jobs, one batched model call (dynamic batching).

Small jobs (at most ``MICROBATCH_MAX_PRODUCTS`` products, see ``web.api``) are sent by the web
tier to their own queue (``interactive-batch``) as the task ``categorizer.categorize_batch``.
That task is a ``celery_batches.Batches`` task: the worker's consumer buffers the messages and
hands them to a pool process as one list when ``CATEGORIZER_BATCH_MAX_SIZE`` jobs are buffered
or every ``CATEGORIZER_BATCH_MAX_WAIT_MS`` milliseconds, whichever comes first. The pool process
then

1. marks every job running and reads every job's input in one Redis pipeline,
2. categorizes all their products in one ``Bundle.predict`` call (identical texts once),
3. writes each job's own results with the idempotent Lua finish, again in one pipeline.

Delivery guarantees are those of ``categorizer.categorize``: the messages are ``acks_late``
and are acknowledged (by the consumer, ``celery_batches``) only after the whole batch returned.
A worker killed mid-batch acknowledges none of them: they are delivered again after
``CATEGORIZER_VISIBILITY_TIMEOUT`` and the finish script ignores jobs that are already final.
When Redis stays unreachable through the retries, the batch's messages are rejected with
requeue instead of being acknowledged, so no job is lost silently.

The consumer must be allowed to reserve a full batch (prefetch >= batch size, or batches
cannot form: with prefetch 1 every "batch" is one job that waits ``MAX_WAIT_MS`` for nothing).
``worker.batch_prefetch.BatchPrefetch`` (a consumer bootstep) raises the prefetch of a worker that consumes the batch
queue to ``2 x CATEGORIZER_BATCH_MAX_SIZE`` (one batch running, the next one forming). Run the
batch queue on its own workers in production (``categorizer worker -Q interactive-batch``): a
worker that also consumes the ``interactive`` queue would reserve that many big jobs too.

Settings (environment, read by the worker):

``CATEGORIZER_BATCH_MAX_SIZE``     jobs per batch (default 256)
``CATEGORIZER_BATCH_MAX_WAIT_MS``  flush interval of a partial batch, in ms (default 10)
"""

from __future__ import annotations

import json
import logging
import os
import time

import redis
from celery.exceptions import SoftTimeLimitExceeded
from celery_batches import Batches

from worker import faults, model
from worker.batch_prefetch import batch_max_size
from worker.celery_app import CATEGORIZE_BATCH_TASK, app
from worker.jobstore import (
    EXHAUSTED,
    FAILED,
    FINAL_STATES,
    MAX_DELIVERIES,
    SUCCEEDED,
    exhausted_error,
    input_key,
    job_key,
    now_iso,
)

log = logging.getLogger("categorizer.worker")

REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
#: Seconds a batch keeps retrying while Redis is unreachable before it gives its messages back.
REDIS_RETRY_SECONDS = 30.0


def batch_max_wait() -> float:
    """Seconds."""
    return max(0.001, float(os.environ.get("CATEGORIZER_BATCH_MAX_WAIT_MS", "10")) / 1000)


class RequeueBatch(Exception):
    """Raised inside the pool when the batch could not be stored: its messages go back to the queue."""


class MicroBatches(Batches):
    """``celery_batches.Batches`` whose ``acks_late`` messages are acknowledged only when the batch
    succeeded (its result is not ``{"requeue": True}``); otherwise they are rejected with requeue.

    ``celery_batches`` acknowledges after any return, also when the task caught an error and could
    store nothing: that would lose the jobs. A killed pool process returns nothing, so its batch
    is neither acknowledged nor rejected (delivered again after the visibility timeout).
    """

    abstract = True

    def flush(self, requests):
        requests = list(requests)
        serializable = ([_simple(r) for r in requests],)

        def on_accepted(pid: int, time_accepted: float) -> None:
            for req in requests:
                if not req.task.acks_late:
                    req.acknowledge()

        def on_return(result) -> None:
            requeue = isinstance(result, dict) and result.get("requeue")
            for req in requests:
                if not req.task.acks_late:
                    continue
                if requeue:
                    req.reject(requeue=True)
                else:
                    req.acknowledge()

        def on_timeout(soft: bool, timeout: float) -> None:
            # The hard limit killed the pool process: nothing in it can record the jobs, so fail
            # them here (in the worker's main process) and acknowledge, as Celery does for a task.
            if soft:
                return  # the task itself handles SoftTimeLimitExceeded
            job_ids = list(dict.fromkeys(r.args[0] for r in requests if r.args))
            outcome = fail_batch(job_ids, f"time limit exceeded: the batch was stopped after {timeout} s")
            for req in requests:
                if not req.task.acks_late:
                    continue
                if outcome.get("requeue"):
                    req.reject(requeue=True)  # not recorded (Redis down): delivered again, failed then
                else:
                    req.acknowledge()

        from celery_batches.trace import apply_batches_task

        return self._pool.apply_async(
            apply_batches_task,
            (self, serializable, 0, None),
            accept_callback=on_accepted,
            callback=on_return,
            timeout_callback=on_timeout,
        )


def _simple(request):
    from celery_batches import SimpleRequest

    return SimpleRequest.from_request(request)


@app.task(
    base=MicroBatches,
    name=CATEGORIZE_BATCH_TASK,
    bind=True,
    flush_every=batch_max_size(),
    flush_interval=batch_max_wait(),
    acks_late=True,
    ignore_result=True,  # the job records are the results
)
def categorize_batch(self, requests) -> dict:
    """Categorize the jobs of ``requests`` (each ``args == (job_id,)``) in one model call.

    Whatever happens, each job ends final or goes back to the queue: ``celery_batches``
    acknowledges the messages after any return (and after an exception too), so a job left
    ``running`` here would stay so for good.
    """
    job_ids = list(dict.fromkeys(r.args[0] for r in requests))  # a job twice in a batch runs once
    try:
        return _run_retrying(job_ids)
    except SoftTimeLimitExceeded:  # wherever it struck: in the batch, a Redis retry's sleep, ...
        limit = self.soft_time_limit or app.conf.task_soft_time_limit
        return fail_batch(job_ids, f"time limit exceeded: the batch ran longer than {limit} s")


def _run_retrying(job_ids: list[str]) -> dict:
    """``run_batch``, retried while Redis is unreachable (then requeued); any other error fails the jobs."""
    deadline = time.monotonic() + REDIS_RETRY_SECONDS
    delay = 0.1
    while True:
        try:
            faults.delay_point(f"microbatch[{len(job_ids)}]")  # test-only, off unless the worker env sets it
            return run_batch(job_ids)
        except REDIS_ERRORS as exc:
            if time.monotonic() > deadline:
                log.error("microbatch_requeued jobs=%d error=%s", len(job_ids), exc)
                return {"requeue": True, "jobs": len(job_ids)}
            log.warning("microbatch_redis_retry jobs=%d error=%s", len(job_ids), exc)
            time.sleep(delay)
            delay = min(2 * delay, 5.0)
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:  # a bug must fail the jobs visibly, not leave them running
            log.exception("microbatch_failed jobs=%d", len(job_ids))
            return fail_batch(job_ids, f"{type(exc).__name__}: {exc}")


def fail_batch(job_ids: list[str], error: str) -> dict:
    """Fail every job of the batch that is not final yet (the finish is idempotent). If Redis
    cannot record it, the messages go back to the queue instead."""
    from worker.tasks import job_store

    store = job_store()
    try:
        failed = store.finish_many([(job_id, FAILED, "[]", "", error) for job_id in job_ids])
    except redis.exceptions.RedisError as exc:
        log.error("microbatch_fail_not_recorded jobs=%d error=%s: requeued", len(job_ids), exc)
        return {"requeue": True, "jobs": len(job_ids)}
    log.error("microbatch_failed jobs=%d failed=%d error=%s", len(job_ids), failed, error)
    return {"jobs": len(job_ids), "failed": failed, "error": error}


def run_batch(job_ids: list[str]) -> dict:
    """Mark, read, categorize and finish ``job_ids``: three Redis round trips and one model call."""
    from worker.tasks import job_results, job_store

    started = time.perf_counter()
    store = job_store()
    pipe = store.redis.pipeline(transaction=False)
    stamp = now_iso()
    for job_id in job_ids:
        store._mark_running(keys=[job_key(job_id)], args=[stamp, MAX_DELIVERIES], client=pipe)
        pipe.get(input_key(job_id))
    replies = pipe.execute()

    finishes: list[tuple[str, str, str, str, str]] = []  # job_id, status, results, version, error
    jobs: list[tuple[str, list[dict]]] = []
    skipped = 0
    for k, job_id in enumerate(job_ids):
        status, raw = replies[2 * k], replies[2 * k + 1]
        if status is None or status in FINAL_STATES:
            skipped += 1  # expired, or finished by an earlier delivery
            continue
        if status == EXHAUSTED:
            finishes.append((job_id, FAILED, "[]", "", exhausted_error()))
            continue
        if raw is None:
            finishes.append((job_id, FAILED, "[]", "", "the job's input has expired"))
            continue
        try:  # one job's unreadable input fails that job only, not its batch
            products = [{"id": p.get("id"), "text": p["text"]} for p in json.loads(raw)["products"]]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            finishes.append((job_id, FAILED, "[]", "", f"unreadable job input: {type(exc).__name__}"))
            continue
        jobs.append((job_id, products))

    texts = [p["text"] for _, products in jobs for p in products]
    model_ms = 0.0
    if jobs:
        t0 = time.perf_counter()
        try:
            predictions, version = model.categorize(f"microbatch[{len(jobs)}]", texts)
        except SoftTimeLimitExceeded:
            raise  # the whole batch fails with the time-limit reason (categorize_batch)
        except Exception as exc:  # a model failure fails the jobs, visibly, instead of hanging them
            log.exception("microbatch_failed jobs=%d", len(jobs))
            error = f"{type(exc).__name__}: {exc}"
            finishes.extend((job_id, FAILED, "[]", "", error) for job_id, _ in jobs)
            jobs, predictions, version = [], [], ""
        model_ms = (time.perf_counter() - t0) * 1000
        pos = 0
        for job_id, products in jobs:
            results = job_results(products, predictions[pos : pos + len(products)], version)
            pos += len(products)
            finishes.append((job_id, SUCCEEDED, json.dumps(results, separators=(",", ":")), version, ""))

    stored = 0
    if finishes:
        stored = store.finish_many(finishes)
    log.info(
        "microbatch jobs=%d products=%d skipped=%d stored=%d model_ms=%.2f total_ms=%.2f pid=%d",
        len(job_ids),
        len(texts),
        skipped,
        stored,
        model_ms,
        (time.perf_counter() - started) * 1000,
        os.getpid(),
    )
    return {"jobs": len(job_ids), "products": len(texts), "stored": stored}
