"""Service-wide counters kept in Redis, read by the web tier's ``/metrics`` on every scrape.

Counters that several processes on several hosts increment (the catalog result cache) live in
Redis rather than in one process's Prometheus registry: one ``INCRBY`` per batch, and the web
tier exports the totals (``categorizer_cache_hits_total``, ``categorizer_cache_misses_total``).
Imports only ``redis``-level code: safe for the web tier and the workers.
"""

from __future__ import annotations

from worker.jobstore import PREFIX

CACHE_HITS_KEY = PREFIX + "stats:cache_hits"
CACHE_MISSES_KEY = PREFIX + "stats:cache_misses"
#: Texts the model ran for catalog chunks (written by ``worker.catalog_store``, when present).
CATALOG_INFERENCES_KEY = PREFIX + "stats:catalog_inferences"


def record_cache(client, hits: int, misses: int = 0, pipeline=None) -> None:
    """Add ``hits`` and ``misses`` of the result cache (``client``: a redis-py client or pipeline)."""
    target = pipeline if pipeline is not None else client.pipeline(transaction=False)
    if hits:
        target.incrby(CACHE_HITS_KEY, int(hits))
    if misses:
        target.incrby(CACHE_MISSES_KEY, int(misses))
    if pipeline is None and (hits or misses):
        target.execute()


def read_all(client) -> dict[str, int]:
    """The counters' current values (0 when never incremented)."""
    keys = [CACHE_HITS_KEY, CACHE_MISSES_KEY, CATALOG_INFERENCES_KEY]
    return {k: int(v or 0) for k, v in zip(keys, client.mget(keys), strict=True)}
