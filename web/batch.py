"""Many jobs per HTTP request: ``POST /v1/jobs:batch``, ``GET /v1/jobs?ids=...&wait=S`` and
``POST /v1/jobs:lookup`` (the same read, with the ids in a JSON body).

A flood of one-product jobs costs the web tier two HTTP requests per job (submit, long-poll).
An ingestion client that has many products at hand sends them as many *independent* jobs in one
request instead: every entry becomes its own job (own id, own record, the same ``GET
/v1/jobs/<id>``), routed like a ``POST /v1/jobs`` of its size (small jobs to the micro-batch
queue), and all records, inputs and task messages are written in **one** Redis round trip
(``worker.jobstore.JobStore.submit``). The multi-job read answers all of them in one request,
long-polling until every job is final or ``wait`` ends.

Body: ``{"jobs": [entry, ...]}`` with 1 to ``MAX_BATCH_JOBS`` entries; an entry is a job
``{"products": [{"id"?, "text"}, ...]}`` (the body of ``POST /v1/jobs``) or, shorthand for a
one-product job, a product ``{"id"?, "text"}``. The batch is all or nothing: any invalid entry
answers ``422`` listing every error with its JSON Pointer (``/jobs/3/products/0/text``, or
``/jobs/3/text`` for the shorthand) and nothing is queued; a full queue answers ``503``.
``Idempotency-Key`` works as for ``POST /v1/jobs`` (a retry returns the same job ids).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid

from flask import Blueprint, current_app, request

from web.api import (
    _canonical_job_id,
    _idempotency_key,
    _job_view,
    _json_response,
    _parse_json_body,
    _queue_full,
    _route,
    _wait_seconds,
    services,
)
from web.auth import check_owner, current_client
from web.problems import Problem, type_uri
from web.publish import task_message
from web.review import mark_results_json
from web.validation import MAX_REPORTED_ERRORS, validate_job_body
from worker.jobstore import FINAL_STATES

bp = Blueprint("jobs_batch", __name__, url_prefix="/v1")


def _error(pointer: str, code: str, detail: str) -> dict:
    return {"pointer": pointer, "code": code, "detail": detail}


def validate_batch_body(body: object, max_jobs: int, max_products: int, max_text_length: int) -> list[list[dict]]:
    """The products of each job (``[[{"id", "text"}, ...], ...]``) or raise ``Problem`` (422)
    with every entry's errors, their pointers prefixed by ``/jobs/<index>``."""
    if not isinstance(body, dict) or not isinstance(body.get("jobs"), list):
        raise Problem(
            "validation-error",
            "the request body must be an object with a 'jobs' array",
            errors=[_error("/jobs", "required" if isinstance(body, dict) else "type", "must be an array of jobs")],
        )
    entries = body["jobs"]
    if not entries:
        raise Problem(
            "validation-error",
            "'jobs' must contain at least one job",
            errors=[_error("/jobs", "empty", "must contain at least 1 job")],
        )
    if len(entries) > max_jobs:
        raise Problem(
            "too-many-jobs",
            f"{len(entries)} jobs in one request; at most {max_jobs} are allowed",
            errors=[_error("/jobs", "too_many", f"has {len(entries)} items; at most {max_jobs}")],
            max_jobs=max_jobs,
        )
    errors: list[dict] = []
    jobs: list[list[dict]] = []
    for i, entry in enumerate(entries):
        where = f"/jobs/{i}"
        shorthand = isinstance(entry, dict) and "products" not in entry and "text" in entry
        try:
            if shorthand:
                jobs.append(validate_job_body({"products": [entry]}, max_products, max_text_length))
            elif isinstance(entry, dict):
                jobs.append(validate_job_body(entry, max_products, max_text_length))
            else:
                errors.append(_error(where, "type", "must be a job {'products': [...]} or a product {'text': ...}"))
        except Problem as problem:
            for err in problem.extra.get("errors", []):
                pointer = err["pointer"]
                if shorthand:  # /products/0/text -> /jobs/i/text
                    pointer = pointer.removeprefix("/products/0")
                errors.append(dict(err, pointer=where + pointer))
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
    if errors:
        errors = errors[:MAX_REPORTED_ERRORS]
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise Problem("validation-error", f"{first['pointer']} {first['detail']}{more}", errors=errors)
    return jobs


@bp.post("/jobs:batch")
def submit_jobs():
    cfg = current_app.config
    body, raw = _parse_json_body()
    jobs = validate_batch_body(body, cfg["MAX_BATCH_JOBS"], cfg["MAX_PRODUCTS"], cfg["MAX_TEXT_LENGTH"])
    svc = services()
    key = _idempotency_key()
    job_ids = [str(uuid.uuid4()) for _ in jobs]
    idempotency = fingerprint = None
    if key is not None:
        fingerprint = hashlib.sha256(b"batch\n" + raw.encode("utf-8")).hexdigest()
        binding = json.dumps({"job_ids": job_ids, "fingerprint": fingerprint})
        idempotency = (key, binding, cfg["IDEMPOTENCY_TTL"])
    rows = []
    for job_id, products in zip(job_ids, jobs, strict=True):
        task, queue = _route(len(products))
        payload = json.dumps({"products": products}, separators=(",", ":"))
        rows.append((job_id, len(products), queue, payload, task_message(svc.celery, task, job_id, queue)))
    kind, detail = svc.store.submit(
        rows, cfg["JOB_TTL"], cfg["MAX_QUEUE_DEPTH"], owner=current_client(), idempotency=idempotency
    )
    if kind == "replay":
        if detail.get("fingerprint") != fingerprint or "job_ids" not in detail:
            raise Problem(
                "idempotency-key-reused",
                "this Idempotency-Key was used for a different request body",
                job_id=detail.get("job_id") or (detail.get("job_ids") or [None])[0],
            )
        pipe = svc.store.redis.pipeline(transaction=False)
        for job_id in detail["job_ids"]:
            pipe.hget(f"categorizer:job:{job_id}", "status")
        statuses = pipe.execute()
        accepted = [{"job_id": j, "status": s or "queued"} for j, s in zip(detail["job_ids"], statuses, strict=True)]
        resp = _json_response({"jobs": accepted}, status=202)
        resp.headers["Idempotent-Replayed"] = "true"
        return resp
    if kind == "full":
        _queue_full(detail[1])
    _count_submitted(len(job_ids))
    return _json_response({"jobs": [{"job_id": j, "status": "queued"} for j in job_ids]}, status=202)


def _count_submitted(n: int) -> None:
    try:
        from web.ops import JOBS_SUBMITTED
    except ImportError:  # pragma: no cover - metrics are optional
        return
    JOBS_SUBMITTED.labels("job").inc(n)


def _parse_ids() -> list[str]:
    raw = request.args.get("ids")
    if not raw:
        raise Problem(
            "invalid-parameter",
            "ids is required: job ids separated by commas",
            errors=[{"parameter": "ids", "code": "required", "detail": "is required"}],
        )
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    _check_count(ids)
    return ids


def validate_lookup_body(body: object, limit: int) -> list[str]:
    """``{"ids": ["<job id>", ...]}`` with 1 to ``limit`` strings, nothing else."""
    if not isinstance(body, dict):
        raise Problem(
            "validation-error",
            'the body must be a JSON object: {"ids": [...]}',
            errors=[_error("", "type", 'must be an object {"ids": [...]}')],
        )
    extra = sorted(set(body) - {"ids"})
    if extra:
        raise Problem(
            "validation-error",
            f"unknown field {extra[0]!r}: the body has only ids",
            errors=[_error(f"/{k}", "unknown_field", "is not a field") for k in extra[:MAX_REPORTED_ERRORS]],
        )
    ids = body.get("ids")
    if not isinstance(ids, list):
        code, detail = ("required", "is required") if ids is None else ("type", "must be an array of job ids")
        raise Problem("validation-error", f"/ids {detail}", errors=[_error("/ids", code, detail)])
    bad = [k for k, v in enumerate(ids) if not isinstance(v, str)]
    if bad:
        errors = [_error(f"/ids/{k}", "type", "must be a string (a job id)") for k in bad[:MAX_REPORTED_ERRORS]]
        raise Problem("validation-error", f"/ids/{bad[0]} must be a string (a job id)", errors=errors)
    if not ids or len(ids) > limit:
        code = "too_many" if ids else "empty"
        detail = f"must name 1 to {limit} jobs (got {len(ids)})"
        raise Problem("validation-error", f"/ids {detail}", errors=[_error("/ids", code, detail)], max_ids=limit)
    return ids


def _check_count(ids: list[str]) -> None:
    limit = current_app.config["MAX_BATCH_JOBS"]
    if not ids or len(ids) > limit:
        raise Problem(
            "invalid-parameter",
            f"ids must name 1 to {limit} jobs (got {len(ids)})",
            errors=[{"parameter": "ids", "code": "too_many" if ids else "empty", "detail": f"1 to {limit} ids"}],
        )


def _missing(job_id: str) -> dict:
    detail = f"no job {job_id[:80]} (unknown, malformed, or expired after its retention time)"
    problem = {"type": type_uri("job-not-found"), "title": "Job not found", "status": 404, "detail": detail}
    return {"job_id": job_id, "error": problem}


def get_jobs():
    """``GET /v1/jobs?ids=``: several jobs in one answer, in the order asked; ``wait`` long-polls until
    all are final. Served by the ``/v1/jobs`` rule of ``web.api`` (one URL rule per path)."""
    return _read_jobs(_parse_ids())


@bp.post("/jobs:lookup")
def lookup_jobs():
    """``POST /v1/jobs:lookup[?wait=S]`` with ``{"ids": [...]}``: the same answer as ``GET /v1/jobs?ids=``
    for as many ids as ``MAX_BATCH_JOBS`` (a URL holds about 100: servers cap the request line)."""
    body, _ = _parse_json_body()
    return _read_jobs(validate_lookup_body(body, current_app.config["MAX_BATCH_JOBS"]))


def _read_jobs(ids: list[str]):
    wait = _wait_seconds()
    svc = services()
    canonical: list[str | None] = []
    for job_id in ids:
        try:
            canonical.append(_canonical_job_id(job_id))
        except Problem:
            canonical.append(None)
    wanted = sorted({j for j in canonical if j})
    records = dict(zip(wanted, svc.store.get_many(wanted), strict=True))
    records = {j: r for j, r in records.items() if check_owner(r)}  # others' jobs: not found
    # the answer is built in memory: refuse (before waiting) a read of more results than the limit
    limit = current_app.config["MAX_LOOKUP_RESULTS"]
    results = sum(int(records[c].get("count") or 0) for c in canonical if c in records)
    if results > limit:
        raise Problem(
            "too-many-results",
            f"these {len(ids)} jobs hold {results} results; one read answers at most {limit}: ask for fewer jobs",
            max_results=limit,
        )
    deadline = time.monotonic() + wait
    while True:
        pending = [j for j, r in records.items() if r.get("status") not in FINAL_STATES]
        remaining = deadline - time.monotonic()
        if not pending or remaining < 0.01:
            break
        # block until the first pending job is final, then re-read every pending one (one round trip)
        fresh = (svc.waiter or svc.store).get_many_after_wait(pending[0], remaining, pending)
        records.update({j: r for j, r in zip(pending, fresh, strict=True) if r})
    threshold = current_app.config["REVIEW_THRESHOLD"]
    parts = []
    unfinished = False
    for job_id, canon in zip(ids, canonical, strict=True):
        record = records.get(canon) if canon else None
        if record is None:
            parts.append(json.dumps(_missing(job_id), separators=(",", ":")))
            continue
        view, raw = _job_view(canon, record)
        unfinished |= view["status"] not in FINAL_STATES
        text = json.dumps(view, separators=(",", ":"))
        parts.append(text[:-1] + ',"results":' + mark_results_json(raw, threshold) + "}")
    resp = current_app.response_class('{"jobs":[' + ",".join(parts) + "]}", mimetype="application/json")
    if unfinished:
        resp.headers["Retry-After"] = "1"
    return resp
