"""``/v1/jobs``: submit a job, read a job (with optional long-poll)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
from dataclasses import dataclass

from celery import Celery
from flask import Blueprint, Flask, Response, current_app, request, url_for

from web.auth import check_owner, current_client
from web.problems import Problem
from web.publish import task_message
from web.review import mark_results_json
from web.validation import canonical_uuid, validate_job_body
from worker.celery_app import CATEGORIZE_BATCH_TASK, CATEGORIZE_TASK, make_celery
from worker.jobstore import FAILED, FINAL_STATES, JobStore, connect

log = logging.getLogger("categorizer.web")

bp = Blueprint("jobs", __name__, url_prefix="/v1")

MAX_IDEMPOTENCY_KEY_LENGTH = 255


@dataclass
class Services:
    store: JobStore
    celery: Celery
    #: the same store on a client whose socket timeout allows a long-poll of MAX_WAIT seconds
    waiter: JobStore | None = None


def init_services(app: Flask) -> None:
    url = app.config["REDIS_URL"]
    # Every Redis call has a socket timeout, so a frozen or unreachable Redis answers 503 instead of
    # hanging the request; long-poll reads (BLMOVE up to MAX_WAIT s) use a second client that allows it.
    timeout = float(app.config["REDIS_SOCKET_TIMEOUT"])
    app.extensions["categorizer"] = Services(
        store=JobStore(connect(url, socket_timeout=timeout)),
        celery=make_celery(url),
        waiter=JobStore(connect(url, socket_timeout=timeout + float(app.config["MAX_WAIT"]))),
    )


def services() -> Services:
    return current_app.extensions["categorizer"]


def _json_response(payload: dict, status: int = 200, raw_results: str | None = None) -> Response:
    """JSON response; ``raw_results`` (already JSON, as stored by the worker) is spliced in
    without decoding and re-encoding it."""
    text = json.dumps(payload, separators=(",", ":"))
    if raw_results is not None:
        text = text[:-1] + ',"results":' + raw_results + "}"
    return Response(text, status=status, mimetype="application/json")


def _job_view(job_id: str, record: dict) -> tuple[dict, str]:
    status = record.get("status", "queued")
    view = {
        "job_id": job_id,
        "status": status,
        "submitted_at": record.get("submitted_at"),
        "started_at": record.get("started_at") or None,
        "finished_at": record.get("finished_at") or None,
        "model_version": record.get("model_version") or None,
        "count": int(record.get("count", 0)),
        "attempts": int(record.get("attempts", 0)),
    }
    if status == FAILED:
        view["error"] = record.get("error") or "unknown error"
    raw = record.get("results") if status in FINAL_STATES else None
    return view, raw or "[]"


def _parse_json_body() -> tuple[object, str]:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    # Refuse an oversized body from its Content-Length, before reading any of it.
    if request.content_length is not None and request.content_length > limit:
        raise Problem(
            "payload-too-large",
            f"the request body is {request.content_length} bytes; at most {limit} are allowed",
            max_bytes=limit,
        )
    if not request.is_json:
        raise Problem(
            "unsupported-media-type",
            f"send the body as application/json (got {request.mimetype or 'no Content-Type'})",
        )
    data = request.get_data(cache=False)  # also bounded by MAX_CONTENT_LENGTH when chunked
    try:
        text = data.decode("utf-8")  # RFC 8259: JSON exchanged between systems is UTF-8
        return json.loads(text), text
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem("malformed-json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise Problem("malformed-json", "the body is nested too deeply") from None


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not (0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH) or not key.isascii() or not key.isprintable():
        raise Problem(
            "invalid-header",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters",
            errors=[{"header": "Idempotency-Key", "code": "invalid", "detail": "invalid value"}],
        )
    client = current_client()  # with API keys on, each client has its own key space
    return key if client is None else f"{client}\n{key}"


def _accepted(job_id: str, status: str, replayed: bool = False) -> Response:
    resp = _json_response({"job_id": job_id, "status": status}, status=202)
    resp.headers["Location"] = url_for("jobs.get_job", job_id=job_id)
    if replayed:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


def _route(count: int) -> tuple[str, str]:
    """Task name and queue of a job of ``count`` products (micro-batching: small jobs go to the
    batch queue, where one model call serves many jobs)."""
    cfg = current_app.config
    if cfg["MICROBATCH"] and count <= cfg["MICROBATCH_MAX_PRODUCTS"]:
        return CATEGORIZE_BATCH_TASK, cfg["BATCH_QUEUE"]
    return CATEGORIZE_TASK, cfg["QUEUE"]


def _queue_full(depth: int):
    cfg = current_app.config
    raise Problem(
        "queue-full",
        f"{depth} jobs are waiting (limit {cfg['MAX_QUEUE_DEPTH']}); retry later",
        headers={"Retry-After": cfg["RETRY_AFTER"]},
        queue_depth=depth,
    )


@bp.route("/jobs", methods=["POST", "GET"])  # one rule per path: GET is the multi-job read (web.batch)
def submit_job():
    if request.method == "GET":
        from web.batch import get_jobs

        return get_jobs()
    cfg = current_app.config
    body, raw = _parse_json_body()
    products = validate_job_body(body, cfg["MAX_PRODUCTS"], cfg["MAX_TEXT_LENGTH"])
    svc = services()
    key = _idempotency_key()
    job_id = str(uuid.uuid4())
    task, queue = _route(len(products))
    idempotency = None
    if key is not None:
        # a retried request repeats its bytes; the fingerprint tells a reused key apart
        fingerprint = hashlib.sha256(raw.encode("utf-8")).hexdigest()
        binding = json.dumps({"job_id": job_id, "fingerprint": fingerprint})
        idempotency = (key, binding, cfg["IDEMPOTENCY_TTL"])
    # One round trip: the Idempotency-Key check, the back-pressure check, the job record, its input
    # (the validated products only: fields the validation ignores never reach a worker; the
    # message names the job only) and the Celery message (web.publish: what send_task would push),
    # all or nothing (worker.jobstore.JobStore.submit).
    message = task_message(svc.celery, task, job_id, queue)
    payload = json.dumps({"products": products}, separators=(",", ":"))
    kind, detail = svc.store.submit(
        [(job_id, len(products), queue, payload, message)],
        cfg["JOB_TTL"],
        cfg["MAX_QUEUE_DEPTH"],
        owner=current_client(),
        idempotency=idempotency,
    )
    if kind == "replay":
        earlier = detail
        if earlier.get("fingerprint") != fingerprint:
            raise Problem(
                "idempotency-key-reused",
                "this Idempotency-Key was used for a different request body",
                job_id=earlier.get("job_id"),
            )
        record = svc.store.get(earlier["job_id"]) or {}
        return _accepted(earlier["job_id"], record.get("status", "queued"), replayed=True)
    if kind == "full":
        _queue_full(detail[1])
    log.info("job_queued job_id=%s count=%d queue=%s", job_id, len(products), queue)
    return _accepted(job_id, "queued")


def _canonical_job_id(job_id: str) -> str:
    return canonical_uuid(job_id, "job-not-found", "job")


def _wait_seconds() -> float:
    raw = request.args.get("wait")
    if raw is None or raw == "":
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    if not math.isfinite(wait) or wait < 0:
        raise Problem(
            "invalid-parameter",
            f"wait must be a number of seconds >= 0 (got {raw[:40]!r})",
            errors=[{"parameter": "wait", "code": "invalid", "detail": "must be a number >= 0"}],
        )
    if wait < 0.01:  # Redis reads a blocking timeout that rounds to 0 ms as "forever"
        return 0.0
    return min(wait, float(current_app.config["MAX_WAIT"]))


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    job_id = _canonical_job_id(job_id)
    wait = _wait_seconds()
    store = services().store
    record = store.get(job_id)
    if not check_owner(record):  # unknown, expired, or another client's: the same 404
        raise Problem("job-not-found", f"no job {job_id} (unknown, or expired after its retention time)")
    if record.get("status") not in FINAL_STATES and wait > 0:
        # block on the done list and read the record in one round trip
        _, after = (services().waiter or store).get_after_wait(job_id, wait)
        record = after or record
    view, raw = _job_view(job_id, record)
    raw = mark_results_json(raw, current_app.config["REVIEW_THRESHOLD"])  # needs_review, see web.review
    resp = _json_response(view, raw_results=raw)
    if view["status"] not in FINAL_STATES:
        resp.headers["Retry-After"] = "1"
    return resp
