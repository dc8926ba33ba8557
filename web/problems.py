"""RFC 9457 problem details: every error the API returns is ``application/problem+json``.

A problem has ``type`` (a URN naming the kind of problem, stable for clients to switch on),
``title`` (constant per type), ``status``, ``detail`` (this occurrence) and ``instance`` (the
request path). Validation problems add ``errors``: ``[{"pointer": "/products/3/text",
"code": "too_long", "detail": "..."}]`` with JSON Pointers (RFC 6901) into the request body.
"""

from __future__ import annotations

import json
import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("categorizer.web")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:categorizer:problem:"

#: slug -> (status, title)
TYPES: dict[str, tuple[int, str]] = {
    "malformed-json": (400, "Request body is not valid JSON"),
    "invalid-parameter": (400, "Invalid query parameter"),
    "invalid-header": (400, "Invalid request header"),
    "unauthorized": (401, "Missing or invalid API key"),
    "job-not-found": (404, "Job not found"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "payload-too-large": (413, "Request body too large"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "validation-error": (422, "Request body is invalid"),
    "too-many-products": (422, "Too many products in one job"),
    "too-many-jobs": (422, "Too many jobs in one request"),
    "too-many-results": (422, "Too many results for one read"),
    "idempotency-key-reused": (422, "Idempotency-Key reused with a different request body"),
    "rate-limited": (429, "Too many requests"),
    "too-many-catalogs": (429, "Too many unfinished catalogs"),
    "internal-error": (500, "Internal server error"),
    "queue-full": (503, "Too many queued jobs"),
    "service-unavailable": (503, "Service unavailable"),
    "not-ready": (503, "Service not ready"),
}


def type_uri(slug: str) -> str:
    return TYPE_PREFIX + slug


class Problem(Exception):
    """Raise from a view to answer with a problem-details response."""

    def __init__(self, slug: str, detail: str | None = None, headers: dict | None = None, **extra):
        super().__init__(detail or slug)
        self.slug = slug
        self.status, self.title = TYPES[slug]
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def to_dict(self) -> dict:
        body = {"type": type_uri(self.slug), "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        try:
            body["instance"] = request.path
        except RuntimeError:  # outside a request
            pass
        body.update(self.extra)
        return body

    def response(self) -> Response:
        resp = Response(json.dumps(self.to_dict()), status=self.status, mimetype=PROBLEM_JSON)
        for name, value in self.headers.items():
            resp.headers[name] = str(value)
        return resp


_HTTP_SLUGS = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large", 415: "unsupported-media-type"}


def register_error_handlers(app: Flask) -> None:
    """Turn every error, including Flask's own 404/405/413 and any crash, into a problem."""
    import redis
    from kombu.exceptions import OperationalError

    # Redis errors that mean "not available now" (503 + Retry-After); any other RedisError is a bug (500)
    unavailable = (
        redis.exceptions.ConnectionError,  # includes BusyLoadingError
        redis.exceptions.TimeoutError,
        redis.exceptions.ReadOnlyError,  # a replica after a failover
        redis.exceptions.OutOfMemoryError,
        redis.exceptions.TryAgainError,
    )

    @app.errorhandler(Problem)
    def _problem(exc: Problem):
        return exc.response()

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        slug = _HTTP_SLUGS.get(exc.code or 500)
        if slug is None:
            body = {"type": "about:blank", "title": exc.name, "status": exc.code, "detail": exc.description}
            return Response(json.dumps(body), status=exc.code, mimetype=PROBLEM_JSON)
        headers = {}
        if exc.code == 405:
            headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        detail = {
            404: f"no resource at {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
            413: f"the request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes",
            415: exc.description,
        }[exc.code]
        return Problem(slug, detail, headers=headers).response()

    @app.errorhandler(redis.exceptions.RedisError)
    @app.errorhandler(OperationalError)
    def _backend(exc: Exception):
        if isinstance(exc, redis.exceptions.RedisError) and not isinstance(exc, unavailable):
            return _crash(exc)  # a script error or WRONGTYPE is a bug: retrying will not help
        log.error("backend_unavailable path=%s error=%s", request.path, exc)
        return Problem(
            "service-unavailable",
            "the job store or queue (Redis) is unreachable",
            headers={"Retry-After": app.config.get("RETRY_AFTER", 5)},
        ).response()

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        log.exception("unhandled_error path=%s", request.path)
        return Problem("internal-error", "an unexpected error occurred; it has been logged").response()
