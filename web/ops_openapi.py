"""The OpenAPI description of ``/metrics``, ``/v1/stats``, the web page and ``needs_review``
(merged into the document served at ``/openapi.json``)."""

from __future__ import annotations

from web.openapi import RETRY_AFTER, _problem


def extend(spec: dict, config: dict) -> None:
    threshold = config["REVIEW_THRESHOLD"]
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    paths["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics of the web tier (and of the queues and workers, read from Redis)",
            "description": "Text exposition format. The workers export their own metrics on "
            "`CATEGORIZER_WORKER_METRICS_PORT`. See docs/operations.md for the list.",
            "responses": {
                "200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "500": _problem("Unexpected error"),
                "503": _problem("Redis unreachable", RETRY_AFTER),
            },
        }
    }
    paths["/v1/stats"] = {
        "get": {
            "operationId": "getStats",
            "summary": "Queue depths, live workers and the model versions they serve",
            "responses": {
                "200": {
                    "description": "Current state",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Stats"}}},
                },
                "500": _problem("Unexpected error"),
                "503": _problem("Redis unreachable", RETRY_AFTER),
            },
        }
    }
    paths["/"] = {
        "get": {
            "operationId": "webPage",
            "summary": "The web page: categorize one product, or upload a catalog and download its results",
            "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}},
        }
    }
    paths["/static/{filename}"] = {
        "get": {
            "operationId": "staticFile",
            "summary": "CSS and JavaScript of the web page",
            "parameters": [{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The file", "content": {"text/css": {}, "text/javascript": {}}},
                "404": _problem("No such file"),
            },
        }
    }
    schemas["Stats"] = {
        "type": "object",
        "required": ["queues", "workers", "model_versions", "review_threshold"],
        "properties": {
            "queues": {
                "type": "object",
                "description": "Messages waiting per Celery queue",
                "additionalProperties": {"type": "integer"},
            },
            "workers": {
                "type": "array",
                "description": "Workers with a fresh heartbeat",
                "items": {
                    "type": "object",
                    "properties": {
                        "hostname": {"type": "string"},
                        "model_version": {"type": ["string", "null"]},
                        "queues": {"type": "array", "items": {"type": "string"}},
                        "pid": {"type": "integer"},
                        "last_heartbeat_age_s": {"type": "number"},
                    },
                },
            },
            "model_versions": {
                "type": "object",
                "description": "Live workers per model version",
                "additionalProperties": {"type": "integer"},
            },
            "review_threshold": {"type": "number", "description": "REVIEW_THRESHOLD of this server"},
        },
    }
    result = schemas.get("Result")
    if result is not None:
        result["properties"]["needs_review"] = {
            "type": "boolean",
            "description": f"true when `confidence` is below the review threshold ({threshold}, "
            "CATEGORIZER_REVIEW_THRESHOLD): a person should check this result",
        }
        if "needs_review" not in result.get("required", []):
            result.setdefault("required", []).append("needs_review")
