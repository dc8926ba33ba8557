"""``/healthz`` (the process is alive) and ``/readyz`` (it can do useful work)."""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, jsonify

from web.api import services
from web.problems import Problem

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Liveness: answers 200 while the process serves HTTP. Checks nothing else."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Readiness: Redis answers and at least one worker consuming our queue has a fresh heartbeat
    (with micro-batching on, also one consuming the batch queue)."""
    cfg = current_app.config
    store = services().store
    checks: dict = {}
    try:
        store.redis.ping()
        checks["redis"] = {"status": "ok"}
    except redis.exceptions.RedisError as exc:
        checks["redis"] = {"status": "error", "detail": str(exc)}
        raise Problem("not-ready", "Redis is unreachable", checks=checks) from None
    workers = [w for w in store.live_workers(cfg["WORKER_TTL"]) if cfg["QUEUE"] in w.get("queues", [])]
    checks["workers"] = {"status": "ok" if workers else "error", "count": len(workers), "workers": workers}
    checks["queue"] = {"name": cfg["QUEUE"], "depth": store.queue_depth(cfg["QUEUE"])}
    batch_workers = None
    if cfg.get("MICROBATCH"):  # small jobs go to the batch queue: its workers must be alive too
        batch_workers = [w for w in store.live_workers(cfg["WORKER_TTL"]) if cfg["BATCH_QUEUE"] in w.get("queues", [])]
        checks["batch_workers"] = {
            "status": "ok" if batch_workers else "error",
            "count": len(batch_workers),
            "workers": batch_workers,
        }
        checks["batch_queue"] = {"name": cfg["BATCH_QUEUE"], "depth": store.queue_depth(cfg["BATCH_QUEUE"])}
    serving = {w.get("hostname"): w for w in workers + (batch_workers or [])}
    checks["model"] = model_check(list(serving.values()))
    if workers and checks["model"]["status"] == "error":
        raise Problem("not-ready", "no worker process has a model loaded", checks=checks)
    if not workers:
        raise Problem(
            "not-ready",
            f"no worker consuming queue '{cfg['QUEUE']}' has sent a heartbeat in the last {cfg['WORKER_TTL']} s",
            checks=checks,
        )
    if batch_workers is not None and not batch_workers:
        raise Problem(
            "not-ready",
            f"micro-batching is on but no worker consuming queue '{cfg['BATCH_QUEUE']}' has sent a heartbeat "
            f"in the last {cfg['WORKER_TTL']} s",
            checks=checks,
        )
    return jsonify(status="ready", checks=checks)


def model_check(workers: list[dict]) -> dict:
    """The versions the workers' pool processes serve and the bundles they refused (docs/models.md).

    ``ok``: every reporting process serves a model and none refused one; ``degraded``: some process
    refused a bundle (it keeps serving its previous one); ``error``: processes reported, none serves.
    """
    processes = [dict(p, hostname=w.get("hostname")) for w in workers for p in w.get("model_processes") or []]
    versions = sorted({p["model_version"] for p in processes if p.get("model_version")})
    errors = [
        {k: p.get(k) for k in ("hostname", "pid", "model_version", "error_version", "model_error")}
        for p in processes
        if p.get("model_error")
    ]
    if processes and not versions:
        status = "error"
    elif errors:
        status = "degraded"
    else:
        status = "ok"
    current = sorted({w["model_current"] for w in workers if w.get("model_current")})
    return {"status": status, "versions": versions, "current": current, "errors": errors}
