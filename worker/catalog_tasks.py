"""The catalog chunk task. Imported by ``celery worker`` only (the web tier sends it by name).

A message names ``(catalog_id, chunk)``; the rows are read from Redis (``worker.catalog_store``).
For the valid rows of a chunk the task:

1. keeps one slot per distinct text (identical texts in a chunk cost one inference) and looks
   each up in the process-local cache (``worker.cache.LocalCache``, keyed by a hash of the raw
   text: a repeated text costs one hash and one dict lookup);
2. for the rest, keys the text by ``normalize_key`` and reads the Redis cache for all of them
   with one ``MGET`` under the current model version;
3. runs the model once, as one batch, on the misses only, and writes them to both caches;
4. stores the chunk's results and counts once (``CatalogStore.store_chunk``: a redelivered
   chunk stores nothing a second time). The results are compact (``results_document``): each
   distinct prediction once, each row a reference to it;
5. sends the catalog's next pending chunk, which the store claimed atomically (``send_next``:
   the per-catalog window, ``CATALOG_WINDOW``), also when a redelivery finds the chunk stored.

It increments ``categorizer:stats:catalog_inferences`` by the number of texts it ran through
the model (exported as ``categorizer_cache_misses_total``) and ``categorizer:stats:cache_hits``
by the rows answered from a cache (``worker.counters.record_cache``;
``categorizer_cache_hits_total``), in one pipeline. Its model call goes through
``worker.model.categorize`` (batch metrics hooks, ``batch job_id=catalog:<id>:<chunk> ...`` log
line). It logs one line per chunk::

    catalog_chunk catalog_id=... chunk=3 rows=512 failed=1 unique=300 cached=120 inferred=180 latency_ms=40.2 ...
"""

from __future__ import annotations

import json
import logging
import os
import time

import kombu.exceptions
import redis
from celery.exceptions import SoftTimeLimitExceeded
from celery.worker.request import Request

from worker import faults, model
from worker.cache import (
    LocalCache,
    ResultCache,
    fast_normalize_key,
    pack_probabilities,
    probabilities_of,
    raw_digest,
    text_digest,
)
from worker.catalog_store import FINAL_STATES, INFERENCES_KEY, CatalogStore
from worker.celery_app import CATALOG_CHUNK_TASK, CATALOG_QUEUE, app
from worker.counters import record_cache
from worker.jobstore import connect

log = logging.getLogger("categorizer.worker")

_state: tuple[int, CatalogStore, ResultCache, LocalCache] | None = None


def _services() -> tuple[CatalogStore, ResultCache, LocalCache]:
    """This process's store and caches (a Redis connection pool is never shared across a fork)."""
    global _state
    if _state is None or _state[0] != os.getpid():
        client = connect(app.conf.broker_url)
        _state = (os.getpid(), CatalogStore(client), ResultCache(client), LocalCache())
    return _state[1], _state[2], _state[3]


def categorize_rows(
    rows: list[list],
    cache: ResultCache,
    counter: redis.Redis | None = None,
    local: LocalCache | None = None,
    job_id: str = "catalog",
) -> tuple[dict, dict]:
    """The chunk's results (``results_document``) and counts.

    The model runs through ``worker.model.categorize`` (the entry point of interactive jobs: its
    ``BATCH_HOOKS`` metrics and its ``batch job_id=...`` log line apply), logged as ``job_id``.
    Raises ``RuntimeError`` when no model can be loaded (the chunk is then retried).
    """
    for _attempt in range(3):
        bundle = model.holder.get()
        if bundle is None:
            raise RuntimeError(f"no model loaded: {model.holder.error}")
        done = _categorize_rows(rows, cache, counter, local, job_id, bundle.version, list(bundle.labels))
        if done is not None:
            return done
    raise RuntimeError("the model version changed during every attempt of the chunk")


def _categorize_rows(rows, cache, counter, local, job_id, version, labels) -> tuple[dict, dict] | None:
    """``categorize_rows`` for model ``version``; None if the model switched to another version
    between the cache lookup and the model call (the chunk is then redone with the new one)."""
    known = local.for_version(version) if local is not None and cache.enabled else {}
    # one slot per distinct text of the chunk; a row points at its slot
    slot_of: dict[bytes, int] = {}
    preds: list[tuple | None] = []
    from_cache: list[bool] = []
    pending: dict[str, list[int]] = {}  # normalized digest -> slots still without a prediction
    first_text: dict[str, str] = {}
    row_slots: list[int | None] = []
    for _row, _id, text, error in rows:
        if error is not None or text is None:
            row_slots.append(None)
            continue
        rk = raw_digest(text)
        s = slot_of.get(rk)
        if s is None:
            s = slot_of[rk] = len(preds)
            p = known.get(rk)
            preds.append(p)
            from_cache.append(p is not None)
            if p is None:
                d = text_digest(fast_normalize_key(text))
                pending.setdefault(d, []).append(s)
                first_text.setdefault(d, text)
        row_slots.append(s)
    unique = list(pending)
    fresh: dict[str, tuple] = {}
    misses: list[str] = []
    for d, p in zip(unique, cache.get_many(version, unique, labels), strict=True):
        if p is None:
            misses.append(d)
        else:
            fresh[d] = p
    for d in fresh:
        for s in pending[d]:
            from_cache[s] = True
    if misses:
        predicted, used = model.categorize(job_id, [first_text[d] for d in misses])
        if used != version:
            return None
        inferred = {d: probabilities_of(p, labels) for d, p in zip(misses, predicted, strict=True)}
        cache.put_many(version, inferred)
        fresh.update(inferred)
    for d, slots in pending.items():
        for s in slots:
            preds[s] = fresh[d]
    if local is not None and cache.enabled and pending:
        local.put_many(version, {rk: preds[s] for rk, s in slot_of.items() if not known.get(rk)})
    out_rows, failed, cached = [], 0, 0
    for (row, ident, _text, error), s in zip(rows, row_slots, strict=True):
        if s is None:
            failed += 1
            out_rows.append([row, ident, None, error or "missing_text"])
        else:
            cached += from_cache[s]
            out_rows.append([row, ident, s, None])
    if counter is not None and (misses or cached):
        pipe = counter.pipeline(transaction=False)
        if misses:
            pipe.incrby(INFERENCES_KEY, len(misses))  # exported as cache misses (web.ops)
        record_cache(counter, hits=cached, pipeline=pipe)
        pipe.execute()
    document = results_document(version, preds, out_rows)
    counts = {
        "done": len(rows),
        "failed": failed,
        "cached": cached,
        "unique": len(preds),
        "inferences": len(misses),
        "model_version": version,
        "labels": labels,
    }
    return document, counts


def results_document(version: str, preds: list[tuple], rows: list[list]) -> dict:
    """A chunk's stored results (format 2): each distinct prediction once, rows point at it.

    ``{"format": 2, "model_version": v, "probabilities": pack_probabilities(preds), "rows":
    [[row, id, prediction index or null, error or null], ...]}``: the probabilities of the
    chunk's distinct texts as one float32 block (exact, and no float formatting per row). Rendered
    by ``web.catalogs`` (which also reads the first format: one full list per row).
    """
    return {"format": 2, "model_version": version, "probabilities": pack_probabilities(preds), "rows": rows}


def send_next(store: CatalogStore, catalog_id: str, chunk: int) -> int | None:
    """Send the pending chunk that storing ``chunk`` claimed (the per-catalog window), if any.

    The claim is made once, in the script that stores ``chunk`` (``CatalogStore.store_chunk``),
    and kept in the catalog's handoff hash until the message is sent: a delivery of ``chunk``
    that finds it already stored (the worker died after the store, before the send or the
    acknowledgement) calls this again and sends the claimed chunk. Nothing is claimed twice;
    a message is sent twice only if a worker dies between the send and ``handoff_sent``, and
    the idempotent store makes that harmless. Nothing is sent for a cancelled catalog.
    """
    claimed = store.handoff(catalog_id, chunk)
    if claimed is None:
        return None
    nxt, queue = claimed
    app.send_task(CATALOG_CHUNK_TASK, args=(catalog_id, nxt), queue=queue or CATALOG_QUEUE, ignore_result=True)
    store.handoff_sent(catalog_id, chunk)
    return nxt


def time_limit_retries() -> int:
    """Deliveries of a chunk after it hit the soft time limit (``CATEGORIZER_CATALOG_TIME_LIMIT_RETRIES``)."""
    value = os.environ.get("CATEGORIZER_CATALOG_TIME_LIMIT_RETRIES")
    return max(0, int(value)) if value not in (None, "") else 2


def fail_chunk(store: CatalogStore, catalog_id: str, chunk: int, reason: str, code: str = "time_limit") -> int:
    """Store every row of a chunk as failed with ``code: reason`` (once), so that the catalog finishes.

    Returns what ``CatalogStore.store_chunk`` returns (-2 when the chunk's input is gone).
    """
    rows = store.load_chunk(catalog_id, chunk)
    if rows is None:
        send_next(store, catalog_id, chunk)  # stored already (the input goes with the store)
        return -2
    error = f"{code}: {reason}"
    # a row that failed on its own keeps its own reason
    document = results_document("", [], [[row, ident, None, own or error] for row, ident, _text, own in rows])
    stored = store.store_chunk(
        catalog_id,
        chunk,
        json.dumps(document, separators=(",", ":"), ensure_ascii=False),
        done=len(rows),
        failed=len(rows),
        cached=0,
        inferences=0,
        model_version="",
        labels=None,
    )
    send_next(store, catalog_id, chunk)
    log.error(
        "catalog_chunk_failed catalog_id=%s chunk=%d rows=%d reason=%s stored=%d",
        catalog_id,
        chunk,
        len(rows),
        reason,
        stored,
    )
    return stored


class ChunkRequest(Request):
    """Fails a chunk's rows when the hard time limit killed the pool process running it.

    Celery acknowledges such a message (it is not delivered again), so without this the chunk
    would never be stored and its catalog would stay ``running`` forever. Runs in the worker's
    main process; the store is idempotent (a chunk already stored is left alone).
    """

    def on_timeout(self, soft, timeout):
        super().on_timeout(soft, timeout)
        if soft or len(self.args or ()) < 2:
            return
        catalog_id, chunk = self.args[0], int(self.args[1])
        try:
            fail_chunk(_services()[0], catalog_id, chunk, f"the chunk task was stopped after {timeout} s")
        except redis.exceptions.RedisError:
            log.exception("catalog_chunk_fail_not_recorded catalog_id=%s chunk=%d", catalog_id, chunk)


class ChunkTask(app.Task):
    """Fails a chunk's rows when its task fails for good (retries exhausted, or an error that is
    not retried), so that the catalog finishes with every row accounted for.

    Celery acknowledges a failed task (``acks_late`` only covers a lost worker): without this,
    the chunk would never be stored and its catalog would stay ``running`` forever, holding its
    window slot and its client's catalog slot. Idempotent: a chunk already stored is left alone.
    """

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        super().on_failure(exc, task_id, args, kwargs, einfo)
        if len(args or ()) < 2:
            return
        catalog_id, chunk = args[0], int(args[1])
        reason = f"{type(exc).__name__}: {str(exc)[:200]} (after {self.request.retries + 1} attempts)"
        try:
            fail_chunk(_services()[0], catalog_id, chunk, reason, code="chunk_failed")
        except Exception:  # noqa: BLE001 - Redis itself may be what failed; nothing more can be done
            log.exception("catalog_chunk_fail_not_recorded catalog_id=%s chunk=%d", catalog_id, chunk)


@app.task(
    name=CATALOG_CHUNK_TASK,
    bind=True,
    base=ChunkTask,
    Request=ChunkRequest,
    # kombu's OperationalError: sending the next chunk (send_next) failed; a new delivery finds the
    # chunk stored and sends its recorded handoff again
    autoretry_for=(
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        kombu.exceptions.OperationalError,
        RuntimeError,
    ),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=10,
)
def categorize_chunk(self, catalog_id: str, chunk: int) -> dict:
    """Categorize chunk ``chunk`` of catalog ``catalog_id`` and store its results exactly once.

    A chunk that exceeds the soft time limit is tried again (``time_limit_retries()`` times, as
    a new message); then its rows are stored as failed (``time_limit: ...``) and the catalog
    finishes without them. Any other final failure fails its rows the same way
    (``chunk_failed: ...``, ``ChunkTask.on_failure``).
    """
    try:
        return _categorize_chunk(catalog_id, chunk)
    except SoftTimeLimitExceeded:
        limit = self.soft_time_limit or app.conf.task_soft_time_limit
        attempt = self.request.retries
        if attempt < time_limit_retries():
            log.warning(
                "catalog_chunk_time_limit catalog_id=%s chunk=%d attempt=%d: retrying", catalog_id, chunk, attempt
            )
            raise self.retry(countdown=1, max_retries=None) from None
        reason = f"the chunk ran longer than the {limit} s time limit in {attempt + 1} attempts"
        stored = fail_chunk(_services()[0], catalog_id, chunk, reason)
        return {"catalog_id": catalog_id, "chunk": chunk, "failed": reason, "stored": stored}


def _categorize_chunk(catalog_id: str, chunk: int) -> dict:
    store, cache, local = _services()
    status = store.mark_started(catalog_id)
    if status is None or status in FINAL_STATES:
        log.info("catalog_chunk_skipped catalog_id=%s chunk=%d reason=%s", catalog_id, chunk, status or "gone")
        return {"catalog_id": catalog_id, "chunk": chunk, "skipped": status or "gone"}
    if store.has_results(catalog_id, chunk):
        nxt = send_next(store, catalog_id, chunk)  # a redelivery: the claimed next chunk may be unsent
        log.info("catalog_chunk_skipped catalog_id=%s chunk=%d reason=already_stored next=%s", catalog_id, chunk, nxt)
        return {"catalog_id": catalog_id, "chunk": chunk, "skipped": "already stored"}
    rows = store.load_chunk(catalog_id, chunk)
    if rows is None:
        send_next(store, catalog_id, chunk)  # stored by another delivery in the meantime
        log.warning("catalog_chunk_skipped catalog_id=%s chunk=%d reason=no_input", catalog_id, chunk)
        return {"catalog_id": catalog_id, "chunk": chunk, "skipped": "no input"}
    started = time.perf_counter()
    faults.delay_point(f"catalog:{catalog_id}:{chunk}")  # test-only (CATEGORIZER_TEST_TASK_DELAY), off by default
    results, counts = categorize_rows(rows, cache, store.redis, local, job_id=f"catalog:{catalog_id}:{chunk}")
    stored = store.store_chunk(
        catalog_id,
        chunk,
        json.dumps(results, separators=(",", ":"), ensure_ascii=False),
        done=counts["done"],
        failed=counts["failed"],
        cached=counts["cached"],
        inferences=counts["inferences"],
        model_version=counts["model_version"],
        labels=counts["labels"],
    )
    nxt = send_next(store, catalog_id, chunk) if stored >= 0 else None
    log.info(
        "catalog_chunk catalog_id=%s chunk=%d rows=%d failed=%d unique=%d cached=%d inferred=%d latency_ms=%.2f "
        "model_version=%s stored=%d next=%s pid=%d",
        catalog_id,
        chunk,
        counts["done"],
        counts["failed"],
        counts["unique"],
        counts["cached"],
        counts["inferences"],
        (time.perf_counter() - started) * 1000,
        counts["model_version"],
        stored,
        nxt,
        os.getpid(),
    )
    return {"catalog_id": catalog_id, "chunk": chunk, "stored": stored}
