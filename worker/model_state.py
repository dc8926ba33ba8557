"""Which bundle each worker pool process serves, and why a reload failed: for ``/readyz``.

The model lives in the pool processes, the heartbeat in the worker's main process. Each pool
process writes its state after every load attempt (and again while a write failed)::

    categorizer:worker-models:<hostname>   hash: pid -> {"pid", "model_version", "model_error",
                                                        "error_version", "loaded_at", "updated_at"}

The heartbeat (``worker.heartbeat``) reads the hash, drops processes that left the pool and
adds the summary to the worker's info, which ``/readyz`` and ``/v1/stats`` show.

Imports only ``redis`` (through ``worker.jobstore``).
"""

from __future__ import annotations

import json
from collections import Counter

PREFIX = "categorizer:worker-models:"
#: Seconds a state hash outlives its last write (a worker gone for good leaves nothing behind).
TTL = 7 * 86400


def key(hostname: str) -> str:
    return PREFIX + hostname


def publish(client, hostname: str, state: dict) -> None:
    """Write one process's state (``state["pid"]`` names it)."""
    pipe = client.pipeline(transaction=False)
    pipe.hset(key(hostname), str(state["pid"]), json.dumps(state))
    pipe.expire(key(hostname), TTL)
    pipe.execute()


def collect(client, hostname: str, live_pids: list[int] | None = None) -> list[dict]:
    """The states of ``hostname``'s pool processes; forgets pids not in ``live_pids`` (when given)."""
    raw = client.hgetall(key(hostname))
    out = []
    stale = []
    for pid, value in raw.items():
        if live_pids is not None and int(pid) not in live_pids:
            stale.append(pid)
            continue
        try:
            out.append(json.loads(value))
        except ValueError:
            stale.append(pid)
    if stale:
        client.hdel(key(hostname), *stale)
    return sorted(out, key=lambda s: s.get("pid", 0))


def summarize(states: list[dict]) -> dict:
    """Heartbeat fields: the version most processes serve, every process's state, the first error."""
    versions = Counter(s.get("model_version") for s in states if s.get("model_version"))
    errors = [s for s in states if s.get("model_error")]
    return {
        "model_version": versions.most_common(1)[0][0] if versions else None,
        "model_error": errors[0]["model_error"] if errors else None,
        "model_processes": [
            {k: s.get(k) for k in ("pid", "model_version", "model_error", "error_version", "loaded_at")} for s in states
        ],
    }
