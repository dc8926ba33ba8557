"""``/v1/catalogs``: upload a whole catalog (streamed), follow it, download its results (streamed).

The upload is read from ``request.stream`` block by block (``web.catalog_ingest``); every
``CATALOG_CHUNK_SIZE`` rows become one chunk in Redis and one task on ``CATALOG_QUEUE``, sent
while the rest of the upload is still being read, at most ``CATALOG_WINDOW`` per catalog at a
time (the others wait in Redis; workers send them as earlier chunks finish). The web process never holds more than one
chunk of the catalog. See docs/catalogs.md.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, request, url_for
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from web.auth import check_owner, claim_catalog_slot, current_client
from web.catalog_ingest import CatalogRefused, Options, encodable, open_catalog
from web.problems import TYPES, Problem
from web.review import needs_review
from web.validation import canonical_uuid
from worker.cache import prediction_of, unpack_probabilities
from worker.catalog_store import FINAL_STATES, SUCCEEDED, CatalogStore
from worker.celery_app import CATALOG_CHUNK_TASK
from worker.jobstore import connect

log = logging.getLogger("categorizer.web")

bp = Blueprint("catalogs", __name__, url_prefix="/v1")

# The catalog problems, registered with the others (web.problems) when this module is imported.
TYPES.update(
    {
        "catalog-not-found": (404, "Catalog not found"),
        "catalog-not-finished": (409, "Catalog not finished"),
        "catalog-too-large": (413, "Catalog too large"),
        "not-a-catalog": (415, "Upload is not a CSV or JSON Lines catalog"),
        "missing-column": (422, "Catalog lacks the text column"),
        "empty-catalog": (422, "Catalog is empty"),
        "upload-interrupted": (400, "Upload interrupted"),
    }
)

_JSONL_TYPES = {"application/x-ndjson", "application/jsonl", "application/jsonlines", "application/x-jsonlines"}
_CSV_TYPES = {"text/csv", "application/csv"}

RESULT_MEDIA = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


class ResultsTruncated(Exception):
    """A catalog's results disappeared during their download (raised inside the streamed body)."""


def store() -> CatalogStore:
    app = current_app
    found = app.extensions.get("categorizer_catalogs")
    if found is None:
        found = app.extensions["categorizer_catalogs"] = CatalogStore(connect(app.config["REDIS_URL"]))
    return found


def _param(name: str, choices: tuple[str, ...] | None = None) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if len(value) > 256 or (choices and value not in choices):
        allowed = f"one of {', '.join(choices)}" if choices else "at most 256 characters"
        raise Problem(
            "invalid-parameter",
            f"{name} must be {allowed} (got {value[:40]!r})",
            errors=[{"parameter": name, "code": "invalid", "detail": f"must be {allowed}"}],
        )
    return value


def _input_format() -> str | None:
    declared = _param("format", ("csv", "jsonl"))
    if declared:
        return declared
    mime = request.mimetype or ""
    if mime in _JSONL_TYPES:
        return "jsonl"
    if mime in _CSV_TYPES:
        return "csv"
    return None


def _drain(stream, limit: int) -> None:
    """Read and drop the rest of the body, so that the client (which sends the whole body
    before it reads the answer) gets the problem instead of a reset connection."""
    try:
        remaining = limit
        while remaining > 0:
            block = stream.read(min(1 << 20, remaining))
            if not block:
                return
            remaining -= len(block)
    except Exception:  # noqa: BLE001 - the answer matters more than the rest of the body
        return


def _too_large(max_bytes: int) -> Problem:
    return Problem("catalog-too-large", f"the upload is larger than {max_bytes} bytes", max_bytes=max_bytes)


def _accepted(catalog_id: str, record: dict) -> Response:
    body = {"catalog_id": catalog_id, **_view(catalog_id, record)}
    resp = Response(json.dumps(body, separators=(",", ":")), status=202, mimetype="application/json")
    resp.headers["Location"] = url_for("catalogs.get_catalog", catalog_id=catalog_id)
    return resp


@bp.post("/catalogs")
def submit_catalog():
    cfg = current_app.config
    max_bytes = int(cfg["MAX_CATALOG_BYTES"])
    if request.content_length is not None and request.content_length > max_bytes:
        raise Problem(
            "catalog-too-large",
            f"the upload is {request.content_length} bytes; at most {max_bytes} are allowed",
            max_bytes=max_bytes,
        )
    options = Options(
        format=_input_format(),
        text_column=_param("text_column"),
        title_column=_param("title_column"),
        description_column=_param("description_column"),
        id_column=_param("id_column"),
        max_text_length=int(cfg["CATALOG_MAX_TEXT_LENGTH"]),
    )
    request.max_content_length = max_bytes  # Flask >= 3.1: this request's own limit
    stream = request.stream
    try:
        reader = open_catalog(stream, options)
    except CatalogRefused as exc:
        _drain(stream, max_bytes)
        raise Problem(exc.code, exc.detail, **exc.extra) from None  # codes are registered in TYPES above
    except RequestEntityTooLarge:
        raise _too_large(max_bytes) from None

    catalogs = store()
    from web.api import services

    celery = services().celery
    catalog_id = str(uuid.uuid4())
    ttl, chunk_size, max_rows = int(cfg["CATALOG_TTL"]), int(cfg["CATALOG_CHUNK_SIZE"]), int(cfg["MAX_CATALOG_ROWS"])
    queue, window = cfg["CATALOG_QUEUE"], int(cfg["CATALOG_WINDOW"])
    claim_catalog_slot(
        catalogs.redis,
        catalog_id,
        int(cfg["MAX_CONCURRENT_CATALOGS"]),
        lambda cid: (catalogs.get(cid) or {}).get("status", "failed") not in FINAL_STATES,
    )
    owner = {"owner": current_client()} if current_client() else {}
    catalogs.create(catalog_id, ttl, format=reader.format, chunk_size=chunk_size, queue=queue, window=window, **owner)
    n, rows = 0, []

    def flush() -> None:
        nonlocal n, rows
        try:
            added = catalogs.add_chunk(catalog_id, n, [r.as_list() for r in rows], ttl, window)
        except UnicodeEncodeError:  # backstop: the reader reports such rows; Redis stores UTF-8 only
            log.error("catalog_row_not_encodable catalog_id=%s chunk=%d", catalog_id, n)
            added = catalogs.add_chunk(catalog_id, n, [encodable(r).as_list() for r in rows], ttl, window)
        if added < 0:
            raise Problem("catalog-not-found", f"catalog {catalog_id} was cancelled during its upload")
        if added:  # else beyond the window: a worker sends it when an earlier chunk is stored
            celery.send_task(CATALOG_CHUNK_TASK, args=(catalog_id, n), queue=queue, ignore_result=True)
        n, rows = n + 1, []

    try:
        for row in reader:
            if row.row > max_rows:
                catalogs.purge(catalog_id)
                _drain(stream, max_bytes)
                raise Problem("catalog-too-large", f"the catalog has more than {max_rows} rows", max_rows=max_rows)
            rows.append(row)
            if len(rows) >= chunk_size:
                flush()
        if rows:
            flush()
    except RequestEntityTooLarge:
        catalogs.purge(catalog_id)
        raise _too_large(max_bytes) from None
    except ClientDisconnected:
        catalogs.fail(catalog_id, "the upload was interrupted before its end")
        log.warning("catalog_upload_interrupted catalog_id=%s rows=%d", catalog_id, reader.rows)
        raise Problem("upload-interrupted", "the upload ended before the announced length") from None
    except Problem:
        raise
    except BaseException:
        catalogs.fail(catalog_id, "the upload could not be read")
        raise
    if n == 0:
        catalogs.purge(catalog_id)
        raise Problem("empty-catalog", "the catalog has a header but no rows")
    record = catalogs.get(catalog_id) if catalogs.finish_ingest(catalog_id) >= 0 else None
    if not record:  # deleted between the last chunk and the end of the upload
        raise Problem("catalog-not-found", f"catalog {catalog_id} was cancelled during its upload")
    log.info(
        "catalog_queued catalog_id=%s rows=%d chunks=%d bytes=%d format=%s",
        catalog_id,
        reader.rows,
        n,
        reader.bytes_read,
        reader.format,
    )
    return _accepted(catalog_id, record)


def _canonical_id(catalog_id: str) -> str:
    return canonical_uuid(catalog_id, "catalog-not-found", "catalog")


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _rows_by_version(record: dict) -> dict[str, int]:
    """Rows categorized by each model version (more than one when the catalog spans a refresh)."""
    prefix = "rows_by_version:"
    return {k[len(prefix) :]: int(v) for k, v in sorted(record.items()) if k.startswith(prefix)}


def _view(catalog_id: str, record: dict) -> dict:
    status = record.get("status", "queued")
    total, done = int(record.get("total", 0)), int(record.get("done", 0))
    ingested = record.get("ingested") == "1"
    started, finished = _ts(record.get("started_at")), _ts(record.get("finished_at"))
    rate = eta = None
    if started is not None:
        end = finished if finished is not None else datetime.now(UTC).timestamp()
        elapsed = max(end - started, 1e-3)
        rate = round(done / elapsed, 1)
        if ingested and status not in FINAL_STATES and rate > 0:
            eta = round((total - done) / rate, 1)
    if status == SUCCEEDED:
        eta = 0.0
    view = {
        "catalog_id": catalog_id,
        "status": status,
        "ingested": ingested,
        "total": total,
        "done": done,
        "failed_rows": int(record.get("failed_rows", 0)),
        "cached_rows": int(record.get("cached_rows", 0)),
        "inferences": int(record.get("inferences", 0)),
        "chunks": int(record.get("chunks", 0)),
        "chunks_done": int(record.get("chunks_done", 0)),
        "rows_per_s": rate,
        "eta_s": eta,
        "model_version": record.get("model_version") or None,
        "model_versions": _rows_by_version(record),
        "submitted_at": record.get("submitted_at"),
        "started_at": record.get("started_at") or None,
        "finished_at": record.get("finished_at") or None,
    }
    if record.get("error"):
        view["error"] = record["error"]
    return view


def _record(catalog_id: str) -> tuple[str, dict]:
    catalog_id = _canonical_id(catalog_id)
    record = store().get(catalog_id)
    if not check_owner(record):  # unknown, expired, or another client's: the same 404
        raise Problem("catalog-not-found", f"no catalog {catalog_id} (unknown, deleted, or expired)")
    return catalog_id, record


@bp.route("/catalogs/<catalog_id>", methods=["GET", "DELETE"])  # one URL rule for both methods
def get_catalog(catalog_id: str):
    if request.method == "DELETE":
        return delete_catalog(catalog_id)
    catalog_id, record = _record(catalog_id)
    view = _view(catalog_id, record)
    resp = Response(json.dumps(view, separators=(",", ":")), mimetype="application/json")
    if view["status"] not in FINAL_STATES:
        resp.headers["Retry-After"] = "1"
    return resp


def result_columns(labels: list[str]) -> list[str]:
    return [
        "row",
        "id",
        "category",
        "confidence",
        *[f"p_{label}" for label in labels],
        "model_version",
        "error",
        "needs_review",
    ]


def _review(confidence, threshold: float) -> bool | None:
    """``needs_review`` of a row (``web.review``; None for a failed row)."""
    return None if confidence is None else needs_review(confidence, threshold)


def expand_results(stored, labels: list[str]) -> list[tuple]:
    """One chunk's stored results as ``(row, id, category, confidence, probabilities, model_version, error)``.

    Reads both formats: 2 (``worker.catalog_tasks.results_document``: the distinct predictions'
    probabilities once, rows pointing at them) and 1 (a list with one full entry per row).
    """
    if isinstance(stored, list):
        return [tuple(r) for r in stored]
    version = stored["model_version"]
    preds = []
    for probs in unpack_probabilities(stored["probabilities"], len(labels)):
        category, confidence = prediction_of(probs, labels)
        preds.append((category, confidence, probs))
    out = []
    for row, ident, k, error in stored["rows"]:
        if k is None:
            out.append((row, ident, None, None, None, version, error))
        else:
            category, confidence, probs = preds[k]
            out.append((row, ident, category, confidence, probs, version, None))
    return out


def _csv_lines(chunks, labels: list[str], threshold: float):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(result_columns(labels))
    yield buf.getvalue()
    empty = [None] * len(labels)
    for results in chunks:
        buf.seek(0)
        buf.truncate()
        for row, ident, category, confidence, probs, version, error in expand_results(results, labels):
            review = _review(confidence, threshold)
            flag = "" if review is None else ("true" if review else "false")
            writer.writerow([row, ident, category, confidence, *(probs or empty), version, error, flag])
        yield buf.getvalue()


def _jsonl_lines(chunks, labels: list[str], threshold: float):
    for results in chunks:
        out = []
        for row, ident, category, confidence, probs, version, error in expand_results(results, labels):
            item = {
                "row": row,
                "id": ident,
                "category": category,
                "confidence": confidence,
                "probabilities": dict(zip(labels, probs, strict=True)) if probs else None,
                "model_version": version,
                "error": error,
                "needs_review": _review(confidence, threshold),
            }
            out.append(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
        if out:
            yield "\n".join(out) + "\n"


@bp.get("/catalogs/<catalog_id>/results")
def get_results(catalog_id: str):
    fmt = _param("format", ("csv", "jsonl")) or "csv"
    catalog_id, record = _record(catalog_id)
    if record.get("status") != SUCCEEDED:
        view = _view(catalog_id, record)
        raise Problem(
            "catalog-not-finished",
            f"catalog {catalog_id} is {view['status']} ({view['done']}/{view['total']} rows); "
            "results are available once it has succeeded",
            headers={"Retry-After": 1} if view["status"] not in FINAL_STATES else None,
            catalog_status=view["status"],
        )
    catalogs, chunks = store(), int(record.get("chunks", 0))
    labels = json.loads(record.get("labels") or "[]")

    def results():
        for n in range(chunks):
            raw = catalogs.chunk_results(catalog_id, n)
            if raw is None:
                # deleted or expired while being downloaded; the 200 is already sent, so break the
                # transfer (no final chunk) rather than end it cleanly as if it were complete
                log.warning("catalog_results_truncated catalog_id=%s chunk=%d of %d", catalog_id, n, chunks)
                raise ResultsTruncated(f"catalog {catalog_id}: the results of chunk {n} are gone")
            yield json.loads(raw)

    threshold = float(current_app.config["REVIEW_THRESHOLD"])  # read now: the body streams outside the app context
    lines = _csv_lines if fmt == "csv" else _jsonl_lines
    body = lines(results(), labels, threshold)
    resp = Response(body, mimetype=RESULT_MEDIA[fmt])
    resp.headers["Content-Disposition"] = f'attachment; filename="catalog-{catalog_id}.{fmt}"'
    return resp


def delete_catalog(catalog_id: str):
    catalog_id, record = _record(catalog_id)
    was = record.get("status", "queued")
    if not store().purge(catalog_id):
        raise Problem("catalog-not-found", f"no catalog {catalog_id} (unknown, deleted, or expired)")
    log.info("catalog_deleted catalog_id=%s was=%s", catalog_id, was)
    # 200 with a body (not 204): says whether running work was cancelled or finished results purged
    body = {"catalog_id": catalog_id, "deleted": True, "cancelled": was not in FINAL_STATES, "previous_status": was}
    return Response(json.dumps(body), status=200, mimetype="application/json")
