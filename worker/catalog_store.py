"""Catalog records, chunk inputs and chunk results in Redis, shared by the web tier and workers.

One catalog ``<id>`` is::

    categorizer:catalog:<id>            hash: status, submitted_at, started_at, finished_at, ingested,
                                        total, chunks, chunks_done, done, failed_rows, cached_rows,
                                        inferences, model_version (the last stored chunk's),
                                        rows_by_version:<version> (rows categorized by each version),
                                        labels (JSON), ttl, format, error
    categorizer:catalog:<id>:in:<n>     chunk ``n``'s input rows (JSON ``[[row, id, text, error], ...]``),
                                        written by the web tier while it reads the upload, deleted by
                                        the worker in the same script that stores the chunk's results
    categorizer:catalog:<id>:out        hash: field ``n`` -> chunk ``n``'s results (JSON, see
                                        ``worker.catalog_tasks``)
    categorizer:catalog:<id>:pending    list of chunk numbers stored but not yet sent (beyond the window)
    categorizer:catalog:<id>:handoff    hash: field ``n`` -> the pending chunk that chunk ``n``'s completion
                                        claimed and that is not yet confirmed sent

Exactly once: the results of chunk ``n`` are stored with ``HSETNX`` inside a Lua script that
also adds the chunk's counts to the record. A redelivered chunk (its worker was killed after
the write but before the acknowledgement, or the message came back after the visibility
timeout) finds its field set and changes nothing, so every row is counted and stored once.
The catalog succeeds in whichever script sees the last piece: the worker storing the last
chunk, or the web tier marking the ingestion complete after every chunk is already done.

Per-catalog window (``CATALOG_WINDOW``): at most W chunk messages of a catalog are queued or
running (record field ``inflight``). ``add_chunk`` (web) claims a slot or appends the chunk to
the pending list; ``store_chunk`` (worker) pops the next pending chunk in the same script that
stores the results (or frees the slot when none is pending) and records it in the handoff hash;
the worker sends it and then clears the handoff. A redelivered chunk that finds its results
stored sends its recorded handoff again (``handoff``), so a worker killed between the store and
the send loses nothing, and a pending chunk is claimed exactly once.

Cancel (``DELETE``) removes every key; a worker then finds no record and skips the chunk, and
a late result write finds no record and stores nothing.

Fail (``fail``: the upload broke off) marks the record ``failed`` and deletes every other key in
one script, so its input does not stay in Redis; queued chunks then find it final and are skipped.

This module imports only ``redis``: it is safe for the web tier.
"""

from __future__ import annotations

import json

import redis

from worker.jobstore import PREFIX, now_iso

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})

#: Redis counter of texts the model ran for catalog chunks (cache misses), all catalogs.
INFERENCES_KEY = PREFIX + "stats:catalog_inferences"


def catalog_key(catalog_id: str) -> str:
    return f"{PREFIX}catalog:{catalog_id}"


def chunk_key(catalog_id: str, n: int | str) -> str:
    return f"{PREFIX}catalog:{catalog_id}:in:{n}"


def out_key(catalog_id: str) -> str:
    return f"{PREFIX}catalog:{catalog_id}:out"


def pending_key(catalog_id: str) -> str:
    return f"{PREFIX}catalog:{catalog_id}:pending"


def handoff_key(catalog_id: str) -> str:
    return f"{PREFIX}catalog:{catalog_id}:handoff"


# KEYS: record, chunk input, pending list. ARGV: chunk JSON, rows in chunk, ttl, chunk index, window.
# Returns -1 (gone/cancelled/failed), 1 (a window slot was claimed: send the chunk now) or 0 (pending).
_ADD_CHUNK = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'cancelled' or status == 'failed' then return -1 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'chunks', tonumber(ARGV[4]) + 1)
redis.call('HINCRBY', KEYS[1], 'total', tonumber(ARGV[2]))
local window = tonumber(ARGV[5])
if window <= 0 then return 1 end
if tonumber(redis.call('HGET', KEYS[1], 'inflight') or '0') < window then
  redis.call('HINCRBY', KEYS[1], 'inflight', 1)
  return 1
end
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[3]))
return 0
"""

# KEYS: record, handoff hash. ARGV: chunk n. Returns {the chunk n's completion claimed, the catalog's queue}.
_HANDOFF = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'cancelled' or status == 'failed' then return false end
local nxt = redis.call('HGET', KEYS[2], ARGV[1])
if not nxt then return false end
return {nxt, redis.call('HGET', KEYS[1], 'queue') or ''}
"""

_SUCCEED_IF_COMPLETE = """
local function succeed_if_complete(key, now)
  local r = redis.call('HMGET', key, 'ingested', 'chunks', 'chunks_done', 'status')
  if r[1] == '1' and tonumber(r[2]) == tonumber(r[3]) and (r[4] == 'queued' or r[4] == 'running') then
    redis.call('HSET', key, 'status', 'succeeded', 'finished_at', now)
    redis.call('EXPIRE', key, tonumber(redis.call('HGET', key, 'ttl') or '86400'))
    if not redis.call('HGET', key, 'started_at') then redis.call('HSET', key, 'started_at', now) end
    return 1
  end
  return 0
end
"""

# KEYS: record, out hash, chunk input, pending list, handoff hash. ARGV: chunk n, results JSON, done, failed,
# cached, inferences, model_version, labels JSON, now.
_STORE_CHUNK = (
    _SUCCEED_IF_COMPLETE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'cancelled' or status == 'failed' then return -1 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('DEL', KEYS[3])
redis.call('HINCRBY', KEYS[1], 'chunks_done', 1)
redis.call('HINCRBY', KEYS[1], 'done', tonumber(ARGV[3]))
redis.call('HINCRBY', KEYS[1], 'failed_rows', tonumber(ARGV[4]))
redis.call('HINCRBY', KEYS[1], 'cached_rows', tonumber(ARGV[5]))
redis.call('HINCRBY', KEYS[1], 'inferences', tonumber(ARGV[6]))
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'model_version', ARGV[7])
  -- rows categorized per version: a catalog that spans a model refresh shows every version
  local categorized = tonumber(ARGV[3]) - tonumber(ARGV[4])
  if categorized > 0 then redis.call('HINCRBY', KEYS[1], 'rows_by_version:' .. ARGV[7], categorized) end
end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'labels', ARGV[8]) end
if status == 'queued' then redis.call('HSET', KEYS[1], 'status', 'running') end
local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl') or '86400')
redis.call('EXPIRE', KEYS[2], ttl)
-- the window: claim the catalog's next pending chunk (sent by the caller), or free the slot
local nxt = redis.call('LPOP', KEYS[4])
if nxt then
  redis.call('HSET', KEYS[5], ARGV[1], nxt)
  redis.call('EXPIRE', KEYS[5], ttl)
elseif tonumber(redis.call('HGET', KEYS[1], 'inflight') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'inflight', -1)
end
succeed_if_complete(KEYS[1], ARGV[9])
return 1
"""
)

# KEYS: record. ARGV: now.
_MARK_STARTED = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'queued' then redis.call('HSET', KEYS[1], 'status', 'running') end
if not redis.call('HGET', KEYS[1], 'started_at') then redis.call('HSET', KEYS[1], 'started_at', ARGV[1]) end
return redis.call('HGET', KEYS[1], 'status')
"""

# KEYS: record. ARGV: now.
_FINISH_INGEST = (
    _SUCCEED_IF_COMPLETE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'cancelled' or status == 'failed' then return -1 end
redis.call('HSET', KEYS[1], 'ingested', '1', 'ingested_at', ARGV[1])
return succeed_if_complete(KEYS[1], ARGV[1])
"""
)


# KEYS: record, out hash, pending list, handoff hash. ARGV: error, now, chunk input key prefix.
# Fails a catalog still being uploaded or run, and frees its data at once (a failed catalog has no
# results to read): its chunk inputs, results, pending list and handoff. Returns 1, or 0 if the
# record is gone or already final (a DELETE in between: nothing is recreated).
_FAIL = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'failed', 'error', ARGV[1], 'finished_at', ARGV[2])
local chunks = tonumber(redis.call('HGET', KEYS[1], 'chunks') or '0')
for start = 0, chunks - 1, 1000 do
  local batch = {}
  for n = start, math.min(start + 999, chunks - 1) do batch[#batch + 1] = ARGV[3] .. n end
  redis.call('DEL', unpack(batch))
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return 1
"""


class CatalogStore:
    """Reads and writes catalogs. ``client`` must use ``decode_responses=True``."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._add_chunk = client.register_script(_ADD_CHUNK)
        self._store_chunk = client.register_script(_STORE_CHUNK)
        self._mark_started = client.register_script(_MARK_STARTED)
        self._finish_ingest = client.register_script(_FINISH_INGEST)
        self._handoff = client.register_script(_HANDOFF)
        self._fail = client.register_script(_FAIL)

    # -- web side --------------------------------------------------------------------------
    def create(self, catalog_id: str, ttl: int, **fields) -> None:
        record = {
            "status": QUEUED,
            "submitted_at": now_iso(),
            "ingested": 0,
            "total": 0,
            "chunks": 0,
            "chunks_done": 0,
            "done": 0,
            "failed_rows": 0,
            "cached_rows": 0,
            "inferences": 0,
            "ttl": int(ttl),
            **{k: v for k, v in fields.items() if v is not None},
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(catalog_key(catalog_id), mapping=record)
        pipe.expire(catalog_key(catalog_id), int(ttl))
        pipe.execute()

    def add_chunk(self, catalog_id: str, n: int, rows: list[list], ttl: int, window: int = 0) -> int:
        """Store chunk ``n``'s input rows. 1: send its task now (a slot of the catalog's ``window``
        was claimed, or ``window`` <= 0 = no window); 0: it waits in the pending list (a worker
        sends it when an earlier chunk is stored); -1: the catalog is gone/cancelled/failed."""
        payload = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)
        keys = [catalog_key(catalog_id), chunk_key(catalog_id, n), pending_key(catalog_id)]
        return int(self._add_chunk(keys=keys, args=[payload, len(rows), int(ttl), n, int(window)]))

    def finish_ingest(self, catalog_id: str) -> int:
        """Mark the upload complete. 1 if that completed the catalog, 0 if not yet, -1 if gone."""
        return int(self._finish_ingest(keys=[catalog_key(catalog_id)], args=[now_iso()]))

    def fail(self, catalog_id: str, error: str) -> bool:
        """Fail a catalog whose upload could not be read to its end and delete its chunk inputs,
        results, pending list and handoff (its queued chunks are skipped). False if it is gone or
        already finished. Atomic: a catalog deleted meanwhile is not recreated."""
        keys = [catalog_key(catalog_id), out_key(catalog_id), pending_key(catalog_id), handoff_key(catalog_id)]
        return bool(self._fail(keys=keys, args=[error, now_iso(), chunk_key(catalog_id, "")]))

    def get(self, catalog_id: str) -> dict | None:
        return self.redis.hgetall(catalog_key(catalog_id)) or None

    def chunk_results(self, catalog_id: str, n: int) -> str | None:
        return self.redis.hget(out_key(catalog_id), str(n))

    def purge(self, catalog_id: str) -> bool:
        """Cancel and delete everything of a catalog. False if it did not exist."""
        key = catalog_key(catalog_id)
        chunks = self.redis.hget(key, "chunks")
        if chunks is None:
            return False
        # mark first: a chunk being ingested or stored right now sees the cancel and stops
        self.redis.hset(key, "status", CANCELLED)
        keys = [chunk_key(catalog_id, n) for n in range(int(chunks))]
        for start in range(0, len(keys), 1000):
            self.redis.delete(*keys[start : start + 1000])
        # chunks added between reading 'chunks' and the cancel mark: delete them too
        extra = int(self.redis.hget(key, "chunks") or chunks)
        if extra > int(chunks):
            self.redis.delete(*[chunk_key(catalog_id, n) for n in range(int(chunks), extra)])
        self.redis.delete(out_key(catalog_id), pending_key(catalog_id), handoff_key(catalog_id), key)
        return True

    # -- worker side -----------------------------------------------------------------------
    def mark_started(self, catalog_id: str) -> str | None:
        """Status after marking the catalog running; None if it is gone (cancelled and purged)."""
        return self._mark_started(keys=[catalog_key(catalog_id)], args=[now_iso()])

    def has_results(self, catalog_id: str, n: int) -> bool:
        return bool(self.redis.hexists(out_key(catalog_id), str(n)))

    def load_chunk(self, catalog_id: str, n: int) -> list[list] | None:
        raw = self.redis.get(chunk_key(catalog_id, n))
        return None if raw is None else json.loads(raw)

    def store_chunk(
        self,
        catalog_id: str,
        n: int,
        results_json: str,
        *,
        done: int,
        failed: int,
        cached: int,
        inferences: int,
        model_version: str,
        labels: list[str] | None,
    ) -> int:
        """Store chunk ``n``'s results once. 1 stored, 0 already stored (redelivery), -1 gone/cancelled."""
        args = [
            str(n),
            results_json,
            done,
            failed,
            cached,
            inferences,
            model_version or "",
            json.dumps(labels) if labels else "",
            now_iso(),
        ]
        keys = [
            catalog_key(catalog_id),
            out_key(catalog_id),
            chunk_key(catalog_id, n),
            pending_key(catalog_id),
            handoff_key(catalog_id),
        ]
        return int(self._store_chunk(keys=keys, args=args))

    def handoff(self, catalog_id: str, n: int) -> tuple[int, str] | None:
        """``(chunk, queue)``: the pending chunk that storing chunk ``n`` claimed and that is not yet
        confirmed sent (``handoff_sent``); None if there is none or the catalog is gone/cancelled."""
        found = self._handoff(keys=[catalog_key(catalog_id), handoff_key(catalog_id)], args=[str(n)])
        return None if not found else (int(found[0]), found[1] or "")

    def handoff_sent(self, catalog_id: str, n: int) -> None:
        self.redis.hdel(handoff_key(catalog_id), str(n))
