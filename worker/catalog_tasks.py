"""The catalog chunk task. Imported by ``celery worker`` only (the web tier sends it by name).

A message names ``(catalog_id, chunk)``; the rows are read from Redis (``worker.catalog_store``).
For the valid rows of a chunk the task:

1. keys every text by ``normalize_key`` and keeps one text per key (identical texts in a chunk
   cost one inference);
2. reads the cache (``worker.cache``) for those keys under the current model version;
3. runs the model once, as one batch, on the misses only, and writes them to the cache;
4. stores the chunk's results and counts once (``CatalogStore.store_chunk``: a redelivered
   chunk stores nothing a second time).

It increments ``categorizer:stats:catalog_inferences`` by the number of texts it ran through
the model, and logs one line per chunk::

    catalog_chunk catalog_id=... chunk=3 rows=512 failed=1 unique=300 cached=120 inferred=180 latency_ms=40.2 ...
"""

from __future__ import annotations

import json
import logging
import os
import time

import redis

from worker import model
from worker.cache import ResultCache, normalize_key, text_digest
from worker.catalog_store import FINAL_STATES, INFERENCES_KEY, CatalogStore
from worker.celery_app import CATALOG_CHUNK_TASK, app
from worker.jobstore import connect

log = logging.getLogger("categorizer.worker")

_state: tuple[int, CatalogStore, ResultCache] | None = None


def _services() -> tuple[CatalogStore, ResultCache]:
    """This process's store and cache (a Redis connection pool is never shared across a fork)."""
    global _state
    if _state is None or _state[0] != os.getpid():
        client = connect(app.conf.broker_url)
        _state = (os.getpid(), CatalogStore(client), ResultCache(client))
    return _state[1], _state[2]


def categorize_rows(rows: list[list], cache: ResultCache, counter: redis.Redis | None = None) -> tuple[list, dict]:
    """Results (``[row, id, category, confidence, [probabilities], model_version, error]``) and counts.

    Raises ``RuntimeError`` when no model can be loaded (the chunk is then retried).
    """
    bundle = model.holder.get()
    if bundle is None:
        raise RuntimeError(f"no model loaded: {model.holder.error}")
    version, labels = bundle.version, list(bundle.labels)
    digests: dict[str, str] = {}  # digest -> first text
    row_digest: list[str | None] = []
    for _row, _id, text, error in rows:
        if error is not None or text is None:
            row_digest.append(None)
            continue
        d = text_digest(normalize_key(text))
        digests.setdefault(d, text)
        row_digest.append(d)
    unique = list(digests)
    found = cache.get_many(version, unique)
    predictions: dict[str, dict] = {d: p for d, p in zip(unique, found, strict=True) if p is not None}
    cached_digests = set(predictions)
    misses = [d for d in unique if d not in cached_digests]
    if misses:
        fresh = bundle.predict([digests[d] for d in misses])
        new = dict(zip(misses, fresh, strict=True))
        predictions.update(new)
        cache.put_many(version, new)
        if counter is not None:
            counter.incrby(INFERENCES_KEY, len(misses))
    out, failed, cached = [], 0, 0
    for (row, ident, _text, error), d in zip(rows, row_digest, strict=True):
        if d is None:
            failed += 1
            out.append([row, ident, None, None, None, version, error or "missing_text"])
            continue
        if d in cached_digests:
            cached += 1
        p = predictions[d]
        probs = [p["probabilities"].get(label) for label in labels]
        out.append([row, ident, p["category"], p["confidence"], probs, version, None])
    counts = {
        "done": len(rows),
        "failed": failed,
        "cached": cached,
        "unique": len(unique),
        "inferences": len(misses),
        "model_version": version,
        "labels": labels,
    }
    return out, counts


@app.task(
    name=CATALOG_CHUNK_TASK,
    autoretry_for=(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, RuntimeError),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=10,
)
def categorize_chunk(catalog_id: str, chunk: int) -> dict:
    """Categorize chunk ``chunk`` of catalog ``catalog_id`` and store its results exactly once."""
    store, cache = _services()
    status = store.mark_started(catalog_id)
    if status is None or status in FINAL_STATES:
        log.info("catalog_chunk_skipped catalog_id=%s chunk=%d reason=%s", catalog_id, chunk, status or "gone")
        return {"catalog_id": catalog_id, "chunk": chunk, "skipped": status or "gone"}
    if store.has_results(catalog_id, chunk):
        log.info("catalog_chunk_skipped catalog_id=%s chunk=%d reason=already_stored", catalog_id, chunk)
        return {"catalog_id": catalog_id, "chunk": chunk, "skipped": "already stored"}
    rows = store.load_chunk(catalog_id, chunk)
    if rows is None:
        log.warning("catalog_chunk_skipped catalog_id=%s chunk=%d reason=no_input", catalog_id, chunk)
        return {"catalog_id": catalog_id, "chunk": chunk, "skipped": "no input"}
    started = time.perf_counter()
    results, counts = categorize_rows(rows, cache, store.redis)
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
    log.info(
        "catalog_chunk catalog_id=%s chunk=%d rows=%d failed=%d unique=%d cached=%d inferred=%d latency_ms=%.2f "
        "model_version=%s stored=%d pid=%d",
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
        os.getpid(),
    )
    return {"catalog_id": catalog_id, "chunk": chunk, "stored": stored}
