"""Service-owned job records in Redis, shared by the web tier and the workers.

Celery reports any unknown task id as ``PENDING``, so the service keeps its own records and
can tell "queued" from "never existed / expired". One job is::

    categorizer:job:<job_id>        hash: status, submitted_at, started_at, finished_at,
                                    model_version, error, count, attempts, ttl, results (JSON)
    categorizer:job:<job_id>:input  the request body as received (JSON, validated by the web
                                    tier); the worker reads the products from it and deletes it
                                    when the job is final. Keeping the input out of the task
                                    message spares a JSON + base64 round trip of the whole body.
    categorizer:job:<job_id>:done   list holding one token once the job is final; long-polling
                                    readers block on it (BLMOVE onto itself, so every waiter
                                    sees the token and it stays for later ones)

Both keys expire ``ttl`` seconds after the last write (the retention time).

Writes from workers go through Lua scripts so that they are atomic and idempotent: a record
that expired is never re-created, and once a job has succeeded or failed a redelivered task
(at-least-once delivery) changes nothing, so results are stored exactly once.

Worker liveness for ``/readyz``: each worker's consumer writes a heartbeat into the sorted set
``categorizer:workers`` (member = worker hostname, score = unix time).

This module imports only ``redis``: it is safe for the web tier.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime

import redis

PREFIX = "categorizer:"
WORKERS_KEY = PREFIX + "workers"
WORKERS_INFO_KEY = PREFIX + "workers:info"

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
FINAL_STATES = frozenset({SUCCEEDED, FAILED})

#: Deliveries of one job before it fails: a job whose processing kills its worker every time
#: (out of memory, a native crash) is redelivered (acks_late); this stops the loop.
MAX_DELIVERIES = int(os.environ.get("CATEGORIZER_MAX_DELIVERIES", "10"))
EXHAUSTED = "exhausted"

# KEYS: record. ARGV: started_at, max deliveries (0 = no limit).
_MARK_RUNNING = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'succeeded' or status == 'failed' then return status end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if tonumber(ARGV[2]) > 0 and n > tonumber(ARGV[2]) then return 'exhausted' end
return 'running'
"""


def exhausted_error() -> str:
    return (
        f"the job was delivered {MAX_DELIVERIES} times and its worker stopped each time before finishing "
        "(CATEGORIZER_MAX_DELIVERIES)"
    )


# KEYS: record, done list, input. ARGV: status, finished_at, model_version, results JSON, error.
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if status == 'succeeded' or status == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], 'model_version', ARGV[3],
           'results', ARGV[4], 'error', ARGV[5])
local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl') or '86400')
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('RPUSH', KEYS[2], '1')
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""


# Submit jobs in one round trip (web tier). KEYS: record, input, queue for each job, then the
# Idempotency-Key's key when there is one (#KEYS % 3 == 1). ARGV: max queue depth, ttl,
# submitted_at, owner ('' = none), idempotency value, idempotency ttl, then count, body, task
# message for each job. Nothing is written unless everything is: an Idempotency-Key already bound
# answers {'replay', binding}; a queue deeper than the limit answers {'full', queue, depth}.
_SUBMIT = """
local jobs = math.floor(#KEYS / 3)
local idem = nil
if #KEYS % 3 == 1 then idem = KEYS[#KEYS] end
if idem then
  local earlier = redis.call('GET', idem)
  if earlier then return {'replay', earlier} end
end
local limit = tonumber(ARGV[1])
local seen = {}
for i = 0, jobs - 1 do
  local q = KEYS[3 * i + 3]
  if not seen[q] then
    seen[q] = true
    local depth = redis.call('LLEN', q)
    if depth > limit then return {'full', q, depth} end
  end
end
if idem then redis.call('SET', idem, ARGV[5], 'EX', ARGV[6]) end
local ttl = ARGV[2]
for i = 0, jobs - 1 do
  local record, input, q = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local a = 7 + 3 * i
  redis.call('HSET', record, 'status', 'queued', 'submitted_at', ARGV[3], 'count', ARGV[a],
             'attempts', '0', 'ttl', ttl, 'queue', q)
  if ARGV[4] ~= '' then redis.call('HSET', record, 'owner', ARGV[4]) end
  redis.call('EXPIRE', record, ttl)
  redis.call('SET', input, ARGV[a + 1], 'EX', ttl)
  redis.call('LPUSH', q, ARGV[a + 2])
end
return {'ok', jobs}
"""


def now_iso() -> str:
    """The current UTC time as ISO 8601 with microseconds (``2025-01-31T12:00:00.123456Z``)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def done_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:done"


def input_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:input"


def idempotency_key(key: str) -> str:
    return f"{PREFIX}idem:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


def connect(url: str, **kwargs) -> redis.Redis:
    """A Redis client that decodes strings and fails fast when Redis is unreachable."""
    kwargs.setdefault("socket_connect_timeout", 2)
    kwargs.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(url, decode_responses=True, **kwargs)


class JobStore:
    """Reads and writes job records. ``client`` must use ``decode_responses=True``."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._mark_running = client.register_script(_MARK_RUNNING)
        self._finish = client.register_script(_FINISH)
        self._submit = client.register_script(_SUBMIT)

    # -- web side --------------------------------------------------------------------------
    def create(
        self, job_id: str, count: int, ttl: int, queue: str, body: str | None = None, owner: str | None = None
    ) -> dict:
        """Write a queued job record (and its input ``body``, the request JSON) atomically.
        ``owner``: the API client that created it (``web.auth``), when API keys are on."""
        record = {
            "status": QUEUED,
            "submitted_at": now_iso(),
            "count": count,
            "attempts": 0,
            "ttl": int(ttl),
            "queue": queue,
        }
        if owner:
            record["owner"] = owner
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(job_key(job_id), mapping=record)
        pipe.expire(job_key(job_id), int(ttl))
        if body is not None:
            pipe.set(input_key(job_id), body, ex=int(ttl))
        pipe.execute()
        return record

    def submit(
        self,
        jobs: list[tuple[str, int, str, str, str]],
        ttl: int,
        max_queue_depth: int,
        owner: str | None = None,
        idempotency: tuple[str, str, int] | None = None,
    ) -> tuple[str, object]:
        """Create queued job records with their input and push their task messages, all or none,
        in one round trip. ``jobs``: ``(job_id, count, queue, body, message)`` where ``message`` is
        the Celery message for the Redis transport (``web.publish.task_message``).
        ``idempotency``: ``(key, value, ttl)`` bound to the (single) job unless already bound.

        Returns ``("ok", n)``, ``("replay", earlier binding as a dict)`` or
        ``("full", (queue, depth))`` when a queue holds more than ``max_queue_depth`` messages.
        """
        keys: list[str] = []
        args: list = [int(max_queue_depth), int(ttl), now_iso(), owner or "", "", 0]
        for job_id, count, queue, body, message in jobs:
            keys += [job_key(job_id), input_key(job_id), queue]
            args += [int(count), body, message]
        if idempotency is not None:
            key, value, idem_ttl = idempotency
            keys.append(idempotency_key(key))
            args[4], args[5] = value, int(idem_ttl)
        reply = self._submit(keys=keys, args=args)
        kind = reply[0]
        if kind == "replay":
            return kind, json.loads(reply[1])
        if kind == "full":
            return kind, (reply[1], int(reply[2]))
        return kind, int(reply[1])

    def get_after_wait(self, job_id: str, timeout: float) -> tuple[bool, dict | None]:
        """Block up to ``timeout`` s until the job is final, then read its record, in one round
        trip (a pipeline: Redis runs the ``HGETALL`` when the ``BLMOVE`` returns).
        Returns (final, record or None)."""
        if timeout < 0.01:  # a timeout that rounds to 0 ms would block forever in Redis
            return False, self.get(job_id)
        key = done_key(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.blmove(key, key, timeout, "LEFT", "RIGHT")
        pipe.hgetall(job_key(job_id))
        token, record = pipe.execute()
        return token is not None, record or None

    def get_many(self, job_ids: list[str]) -> list[dict | None]:
        """The raw records of ``job_ids`` (None for unknown/expired ones), in one round trip."""
        if not job_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(job_key(job_id))
        return [r or None for r in pipe.execute()]

    def get_many_after_wait(self, first: str, timeout: float, job_ids: list[str]) -> list[dict | None]:
        """Block up to ``timeout`` s until job ``first`` is final, then read ``job_ids``: one round trip."""
        if timeout < 0.01:  # a timeout that rounds to 0 ms would block forever in Redis
            return self.get_many(job_ids)
        key = done_key(first)
        pipe = self.redis.pipeline(transaction=False)
        pipe.blmove(key, key, timeout, "LEFT", "RIGHT")
        for job_id in job_ids:
            pipe.hgetall(job_key(job_id))
        return [r or None for r in pipe.execute()[1:]]

    def delete(self, job_id: str) -> None:
        self.redis.delete(job_key(job_id), done_key(job_id), input_key(job_id))

    def load_products(self, job_id: str) -> list[dict] | None:
        """The products of a job's stored input body, None if the input is gone."""
        raw = self.redis.get(input_key(job_id))
        if raw is None:
            return None
        return [{"id": p.get("id"), "text": p["text"]} for p in json.loads(raw)["products"]]

    def get(self, job_id: str) -> dict | None:
        """The raw record (``results`` still a JSON string), or None when unknown/expired."""
        record = self.redis.hgetall(job_key(job_id))
        return record or None

    def wait_done(self, job_id: str, timeout: float) -> bool:
        """Block up to ``timeout`` seconds until the job is final. True when it is."""
        if timeout < 0.01:  # a timeout that rounds to 0 ms would block forever in Redis
            return False
        key = done_key(job_id)
        return self.redis.blmove(key, key, timeout, "LEFT", "RIGHT") is not None

    def claim_idempotency_key(self, key: str, job_id: str, fingerprint: str, ttl: int) -> dict | None:
        """Bind ``key`` to ``job_id``. Returns the earlier binding if the key was already used."""
        value = json.dumps({"job_id": job_id, "fingerprint": fingerprint})
        rkey = idempotency_key(key)
        if self.redis.set(rkey, value, nx=True, ex=int(ttl)):
            return None
        existing = self.redis.get(rkey)
        if existing is None:  # expired between the two calls: claim again
            return self.claim_idempotency_key(key, job_id, fingerprint, ttl)
        return json.loads(existing)

    def release_idempotency_key(self, key: str) -> None:
        self.redis.delete(idempotency_key(key))

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in a Celery queue on the Redis transport (a list named like it)."""
        return int(self.redis.llen(queue))

    def live_workers(self, max_age: float) -> list[dict]:
        """Workers whose last heartbeat is at most ``max_age`` seconds old."""
        now = time.time()
        names = self.redis.zrangebyscore(WORKERS_KEY, now - max_age, "+inf", withscores=True)
        if not names:
            return []
        infos = self.redis.hmget(WORKERS_INFO_KEY, [n for n, _ in names])
        out = []
        for (name, beat), info in zip(names, infos, strict=True):
            entry = json.loads(info) if info else {}
            entry.update(hostname=name, last_heartbeat_age_s=round(now - beat, 3))
            out.append(entry)
        return out

    # -- worker side -----------------------------------------------------------------------
    def mark_running(self, job_id: str) -> str | None:
        """Set ``running`` (unless final). Returns the status now, None if the record is gone."""
        return self._mark_running(keys=[job_key(job_id)], args=[now_iso(), MAX_DELIVERIES])

    def finish(
        self,
        job_id: str,
        status: str,
        results_json: str = "[]",
        model_version: str = "",
        error: str = "",
    ) -> bool:
        """Store the outcome once and wake long-polling readers. False if already final/gone."""
        args = [status, now_iso(), model_version, results_json, error]
        return bool(self._finish(keys=[job_key(job_id), done_key(job_id), input_key(job_id)], args=args))

    def finish_many(self, outcomes: list[tuple[str, str, str, str, str]]) -> int:
        """``finish`` for ``(job_id, status, results_json, model_version, error)`` each, in one round
        trip. Returns how many were stored (the others were already final or gone)."""
        pipe = self.redis.pipeline(transaction=False)
        stamp = now_iso()
        for job_id, status, results_json, model_version, error in outcomes:
            keys = [job_key(job_id), done_key(job_id), input_key(job_id)]
            self._finish(keys=keys, args=[status, stamp, model_version, results_json, error], client=pipe)
        return sum(1 for r in pipe.execute() if r)

    def heartbeat(self, hostname: str, info: dict, max_age: float) -> None:
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(WORKERS_KEY, {hostname: now})
        pipe.hset(WORKERS_INFO_KEY, hostname, json.dumps(info))
        pipe.zrangebyscore(WORKERS_KEY, "-inf", now - 60 * max_age)
        stale = pipe.execute()[-1]
        if stale:  # workers gone without a clean shutdown (killed): forget them
            self.redis.zrem(WORKERS_KEY, *stale)
            self.redis.hdel(WORKERS_INFO_KEY, *stale)

    def remove_worker(self, hostname: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(WORKERS_KEY, hostname)
        pipe.hdel(WORKERS_INFO_KEY, hostname)
        pipe.execute()
