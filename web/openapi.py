"""The OpenAPI 3.1 description of the API, served at ``/openapi.json``.

Kept by hand next to the views; ``tests/unit/test_openapi.py`` checks that every route of
the Flask URL map is documented with its methods, and the integration tests check that
every status code the API answers with is documented for its operation.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from web.problems import PROBLEM_JSON, TYPE_PREFIX, TYPES

bp = Blueprint("openapi", __name__)


def _problem(description: str, headers: dict | None = None) -> dict:
    out = {"description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if headers:
        out["headers"] = headers
    return out


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}


def build_spec(config: dict) -> dict:
    max_products = config["MAX_PRODUCTS"]
    max_text = config["MAX_TEXT_LENGTH"]
    max_wait = config["MAX_WAIT"]
    problem_types = sorted(TYPE_PREFIX + slug for slug in TYPES)
    spec = {
        "openapi": "3.1.0",
        "info": {
            "title": "Categorizer API",
            "version": "1.0.0",
            "description": "Asynchronous product categorization. Submit products as a job, then read "
            "the job (optionally long-polling with `wait`). Categories: Electronics, Household, Books, "
            "Clothing & Accessories. Every error is an RFC 9457 problem (`application/problem+json`).",
        },
        "paths": {
            "/v1/jobs": {
                "post": {
                    "operationId": "submitJob",
                    "summary": "Submit products for categorization",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "description": "A retried POST with the same key and body returns the same job.",
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}},
                    },
                    "responses": {
                        "202": {
                            "description": "Job accepted and queued",
                            "headers": {
                                "Location": {"description": "URL of the job", "schema": {"type": "string"}},
                                "Idempotent-Replayed": {
                                    "description": "`true` when an earlier job with this Idempotency-Key is returned",
                                    "schema": {"type": "string"},
                                },
                            },
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobAccepted"}}},
                        },
                        "400": _problem("Malformed JSON body, or invalid Idempotency-Key header"),
                        "413": _problem("Request body larger than the limit (refused before reading it)"),
                        "415": _problem("Content-Type is not application/json"),
                        "422": _problem(
                            "Invalid body (validation-error with `errors[].pointer`), too many products, "
                            "or an Idempotency-Key reused with another body"
                        ),
                        "500": _problem("Unexpected error"),
                        "503": _problem("Queue full (queue-full) or Redis unreachable", RETRY_AFTER),
                    },
                }
            },
            "/v1/jobs/{job_id}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "Read a job, optionally waiting for it to finish",
                    "parameters": [
                        {
                            "name": "job_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "format": "uuid"},
                        },
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "description": f"Long-poll: wait up to this many seconds for the job to finish "
                            f"(values above {max_wait} are reduced to {max_wait}).",
                            "schema": {"type": "number", "minimum": 0},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The job (results when it succeeded)",
                            "headers": {
                                "Retry-After": {
                                    "description": "Present while the job is not finished",
                                    "schema": {"type": "integer"},
                                }
                            },
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}},
                        },
                        "400": _problem("Invalid `wait` parameter"),
                        "404": _problem("Unknown, expired or malformed job id"),
                        "500": _problem("Unexpected error"),
                        "503": _problem("Redis unreachable", RETRY_AFTER),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: the process serves HTTP",
                    "responses": {
                        "200": {
                            "description": "Alive",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: Redis reachable and at least one worker alive",
                    "responses": {
                        "200": {
                            "description": "Ready",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}},
                        },
                        "503": _problem("Not ready; `checks` says which dependency failed"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1 document", "content": {"application/json": {}}}},
                }
            },
        },
        "components": {
            "schemas": {
                "Product": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {
                        "id": {
                            "description": "Optional client id, echoed in the result",
                            "oneOf": [{"type": "string", "maxLength": 256}, {"type": "integer"}],
                        },
                        "text": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": max_text,
                            "description": "Title and description; must not be blank",
                        },
                    },
                },
                "JobRequest": {
                    "type": "object",
                    "required": ["products"],
                    "properties": {
                        "products": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": max_products,
                            "items": {"$ref": "#/components/schemas/Product"},
                        }
                    },
                },
                "JobAccepted": {
                    "type": "object",
                    "required": ["job_id", "status"],
                    "properties": {
                        "job_id": {"type": "string", "format": "uuid"},
                        "status": {"$ref": "#/components/schemas/JobStatus"},
                    },
                },
                "JobStatus": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
                "Job": {
                    "type": "object",
                    "required": ["job_id", "status", "submitted_at", "finished_at", "model_version", "results"],
                    "properties": {
                        "job_id": {"type": "string", "format": "uuid"},
                        "status": {"$ref": "#/components/schemas/JobStatus"},
                        "submitted_at": {"type": "string", "format": "date-time"},
                        "started_at": {"type": ["string", "null"], "format": "date-time"},
                        "finished_at": {"type": ["string", "null"], "format": "date-time"},
                        "model_version": {"type": ["string", "null"]},
                        "count": {"type": "integer", "description": "Number of products"},
                        "attempts": {"type": "integer", "description": "Deliveries to a worker so far"},
                        "error": {"type": "string", "description": "Present when status is failed"},
                        "results": {
                            "type": "array",
                            "description": "In input order; empty until the job succeeded",
                            "items": {"$ref": "#/components/schemas/Result"},
                        },
                    },
                },
                "Result": {
                    "type": "object",
                    "required": ["id", "category", "confidence", "probabilities", "model_version"],
                    "properties": {
                        "id": {
                            "description": "The client id, or null",
                            "oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}],
                        },
                        "category": {"type": "string"},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                        "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
                        "model_version": {"type": "string"},
                    },
                },
                "Health": {"type": "object", "properties": {"status": {"const": "ok"}}},
                "Ready": {
                    "type": "object",
                    "properties": {"status": {"const": "ready"}, "checks": {"type": "object"}},
                },
                "Problem": {
                    "type": "object",
                    "description": "RFC 9457 problem details",
                    "required": ["type", "title", "status"],
                    "properties": {
                        "type": {"type": "string", "enum": problem_types + ["about:blank"]},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "pointer": {"type": "string", "description": "JSON Pointer into the body"},
                                    "parameter": {"type": "string"},
                                    "header": {"type": "string"},
                                    "code": {"type": "string"},
                                    "detail": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            }
        },
    }
    from web.catalogs_openapi import extend

    extend(spec, config)
    from web.batch_openapi import extend as batch_extend

    batch_extend(spec, config)  # POST /v1/jobs:batch, GET /v1/jobs?ids=
    add_access_control(spec, config)
    return spec


def add_access_control(spec: dict, config: dict) -> None:
    """Every ``/v1/`` operation (``web.auth``): the API-key schemes, ``401`` and ``429`` answers.
    Applied to all ``/v1/`` paths, also ones added elsewhere, so the document follows the hook."""
    spec["components"]["securitySchemes"] = {
        "bearerKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
        "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    keys_on = bool(config.get("API_KEYS") or config.get("API_KEYS_FILE"))
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if keys_on:
                operation["security"] = [{"bearerKey": []}, {"headerKey": []}]
            responses.setdefault("401", _problem("Missing or invalid API key (when API keys are configured)"))
            responses.setdefault("429", _problem("Rate limit of this client exceeded", RETRY_AFTER))


@bp.get("/openapi.json")
def openapi():
    from web.models_api import extend as models_extend
    from web.ops_openapi import extend as ops_extend

    spec = build_spec(current_app.config)
    ops_extend(spec, current_app.config)  # /metrics, /v1/stats, the web page, needs_review
    models_extend(spec)  # /v1/model, /v1/models
    add_access_control(spec, current_app.config)  # 401/429 on every /v1/ path, also the ones above
    return jsonify(spec)
