"""The Flask job API (app factory, flaskr style).

``create_app(config)`` builds the app: defaults, then ``CATEGORIZER_*`` environment variables
(``CATEGORIZER_MAX_PRODUCTS=500`` sets ``MAX_PRODUCTS``; values are parsed as JSON when they
can be), then ``REDIS_URL``, then the ``config`` mapping (tests). The web tier imports the
Celery *app* only and sends tasks by name; it never imports ONNX Runtime or model code.

Production: ``gunicorn -k gthread --threads 64 'web.wsgi:app'`` (see docs/service.md).
"""

from __future__ import annotations

import os

from flask import Flask

from worker.celery_app import BATCH_QUEUE, INTERACTIVE_QUEUE

DEFAULTS = {
    "REDIS_URL": "redis://localhost:6379/0",
    # limits
    "MAX_PRODUCTS": 1000,  # products per job
    "MAX_TEXT_LENGTH": 20000,  # characters per product text
    "MAX_CONTENT_LENGTH": 32 * 1024 * 1024,  # bytes per request body (Flask enforces it too)
    # job bookkeeping
    "JOB_TTL": 86400,  # seconds a job record is kept after its last update
    "IDEMPOTENCY_TTL": 86400,  # seconds an Idempotency-Key is remembered
    "MAX_WAIT": 30,  # upper bound of GET ?wait= (seconds); larger values are clamped
    # back-pressure
    "QUEUE": INTERACTIVE_QUEUE,  # Celery queue for interactive jobs (worker.celery_app)
    "MAX_QUEUE_DEPTH": 1000,  # queued messages beyond which POST answers 503
    # micro-batching (docs/microbatching.md): jobs of at most MICROBATCH_MAX_PRODUCTS products go
    # to BATCH_QUEUE, whose workers categorize many of them in one model call
    "MICROBATCH": False,
    "MICROBATCH_MAX_PRODUCTS": 32,
    "BATCH_QUEUE": BATCH_QUEUE,  # the queue worker.batch_prefetch raises the prefetch of (worker.celery_app)
    # POST /v1/jobs:batch and GET /v1/jobs?ids=: jobs per request (web/batch.py)
    "MAX_BATCH_JOBS": 1000,
    # results one multi-job read (GET /v1/jobs?ids=, POST /v1/jobs:lookup) may answer: bounds its memory
    "MAX_LOOKUP_RESULTS": 20000,
    "RETRY_AFTER": 5,  # seconds, Retry-After of 503 answers
    # catalogs (docs/catalogs.md): streamed uploads split into chunks on CATALOG_QUEUE
    "CATALOG_QUEUE": "catalog",
    "CATALOG_CHUNK_SIZE": 512,  # rows per chunk (one task, one model batch)
    # chunk messages of one catalog queued or running at a time (the rest wait in Redis, sent as
    # earlier chunks finish), so that several catalogs share the workers in turn; 0 = no window
    "CATALOG_WINDOW": 4,
    "MAX_CATALOG_ROWS": 2_000_000,  # data rows per catalog
    "MAX_CONCURRENT_CATALOGS": 4,  # unfinished catalogs per client (web/auth.py; 0 = no limit)
    "MAX_CATALOG_BYTES": 1024 * 1024 * 1024,  # bytes per catalog upload
    "CATALOG_MAX_TEXT_LENGTH": 20000,  # characters per row text; longer rows fail (per row)
    "CATALOG_TTL": 7 * 86400,  # seconds a catalog and its results are kept
    # low-confidence review (web.review): results below this confidence carry needs_review: true
    "REVIEW_THRESHOLD": 0.9,
    # Redis client of the web tier: a request never hangs on an unreachable or frozen Redis, it
    # answers 503 service-unavailable after at most this many seconds (long-polls add MAX_WAIT)
    "REDIS_SOCKET_TIMEOUT": 5,
    # access (web/auth.py): API keys "name:key,..." and/or a file of such lines; empty = open API
    "API_KEYS": "",
    "API_KEYS_FILE": "",
    # per-client token bucket on /v1/ (0 = off); burst defaults to the per-minute rate
    "RATE_LIMIT_PER_MINUTE": 0,
    "RATE_LIMIT_BURST": 0,
    # readiness
    "WORKER_TTL": 10,  # seconds since a worker's last heartbeat for it to count as alive
}


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("CATEGORIZER")
    if os.environ.get("REDIS_URL"):
        app.config["REDIS_URL"] = os.environ["REDIS_URL"]
    if config:
        app.config.update(config)
    from web.settings import check_config

    check_config(app.config)  # a bad CATEGORIZER_* value stops start-up, naming the setting
    app.json.sort_keys = False

    from web.problems import register_error_handlers

    register_error_handlers(app)

    from web.auth import init_auth

    init_auth(app)

    # operator endpoints (/metrics, /v1/stats) and the web page at /
    from web.ops import bp as ops_bp
    from web.ops import init_metrics
    from web.ui import bp as ui_bp

    init_metrics(app)
    app.register_blueprint(ops_bp)
    app.register_blueprint(ui_bp)

    from web.api import bp as api_bp
    from web.api import init_services
    from web.health import bp as health_bp
    from web.openapi import bp as openapi_bp

    init_services(app)
    app.register_blueprint(api_bp)
    from web.batch import bp as batch_bp

    app.register_blueprint(batch_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(openapi_bp)
    from web.models_api import bp as models_bp

    app.register_blueprint(models_bp)
    from web.catalogs import bp as catalogs_bp

    app.register_blueprint(catalogs_bp)
    return app
