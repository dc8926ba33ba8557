"""OpenAPI description of ``POST /v1/jobs:batch``, ``GET /v1/jobs?ids=`` and ``POST /v1/jobs:lookup``
(web/batch.py)."""

from __future__ import annotations

from web.openapi import RETRY_AFTER, _problem


def extend(spec: dict, config: dict) -> None:
    max_jobs = config["MAX_BATCH_JOBS"]
    max_wait = config["MAX_WAIT"]
    schemas = spec["components"]["schemas"]
    schemas["BatchRequest"] = {
        "type": "object",
        "required": ["jobs"],
        "properties": {
            "jobs": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_jobs,
                "description": "Each entry is its own job: a job body `{products: [...]}`, or one product "
                "`{id?, text}` as shorthand for a one-product job.",
                "items": {
                    "oneOf": [{"$ref": "#/components/schemas/JobRequest"}, {"$ref": "#/components/schemas/Product"}]
                },
            }
        },
    }
    schemas["BatchAccepted"] = {
        "type": "object",
        "required": ["jobs"],
        "properties": {
            "jobs": {
                "type": "array",
                "description": "One entry per submitted job, in request order",
                "items": {"$ref": "#/components/schemas/JobAccepted"},
            }
        },
    }
    schemas["MissingJob"] = {
        "type": "object",
        "required": ["job_id", "error"],
        "properties": {
            "job_id": {"type": "string", "description": "The id as asked"},
            "error": {"$ref": "#/components/schemas/Problem"},
        },
    }
    schemas["JobList"] = {
        "type": "object",
        "required": ["jobs"],
        "properties": {
            "jobs": {
                "type": "array",
                "description": "In the order of `ids`; an unknown, malformed, expired (or another client's) id "
                "is a MissingJob carrying a job-not-found problem",
                "items": {"oneOf": [{"$ref": "#/components/schemas/Job"}, {"$ref": "#/components/schemas/MissingJob"}]},
            }
        },
    }
    schemas["LookupRequest"] = {
        "type": "object",
        "required": ["ids"],
        "additionalProperties": False,
        "properties": {
            "ids": {"type": "array", "minItems": 1, "maxItems": max_jobs, "items": {"type": "string"}},
        },
    }
    spec["paths"]["/v1/jobs:batch"] = {
        "post": {
            "operationId": "submitJobs",
            "summary": "Submit many independent jobs in one request",
            "description": "All or nothing: an invalid entry answers 422 with every error's pointer "
            "(`/jobs/3/products/0/text`; `/jobs/3/text` for a product entry) and nothing is queued. "
            "Each job gets its own id, record and `GET /v1/jobs/{job_id}`.",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "A retried POST with the same key and body returns the same job ids.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}}},
            },
            "responses": {
                "202": {
                    "description": "Jobs accepted and queued",
                    "headers": {
                        "Idempotent-Replayed": {
                            "description": "`true` when the jobs of an earlier request with this key are returned",
                            "schema": {"type": "string"},
                        }
                    },
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchAccepted"}}},
                },
                "400": _problem("Malformed JSON body, or invalid Idempotency-Key header"),
                "413": _problem("Request body larger than the limit (refused before reading it)"),
                "415": _problem("Content-Type is not application/json"),
                "422": _problem(
                    f"Invalid entries (validation-error, `errors[].pointer` under `/jobs/<index>`), more than "
                    f"{max_jobs} jobs (too-many-jobs), or an Idempotency-Key reused with another body"
                ),
                "500": _problem("Unexpected error"),
                "503": _problem("Queue full (queue-full) or Redis unreachable", RETRY_AFTER),
            },
        }
    }
    spec["paths"].setdefault("/v1/jobs", {})["get"] = {
        "operationId": "getJobs",
        "summary": "Read several jobs, optionally waiting until all are final",
        "parameters": [
            {
                "name": "ids",
                "in": "query",
                "required": True,
                "description": f"1 to {max_jobs} job ids separated by commas",
                "schema": {"type": "string"},
            },
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": f"Long-poll: wait up to this many seconds until every job is final "
                f"(values above {max_wait} are reduced to {max_wait}).",
                "schema": {"type": "number", "minimum": 0},
            },
        ],
        "responses": {
            "200": {
                "description": "The jobs, in the order asked",
                "headers": {
                    "Retry-After": {
                        "description": "Present while a job is not finished",
                        "schema": {"type": "integer"},
                    }
                },
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobList"}}},
            },
            "400": _problem("Missing or invalid `ids`, or invalid `wait`"),
            "422": _problem("The jobs hold more than MAX_LOOKUP_RESULTS results (too-many-results; `max_results`)"),
            "500": _problem("Unexpected error"),
            "503": _problem("Redis unreachable", RETRY_AFTER),
        },
    }
    spec["paths"]["/v1/jobs:lookup"] = {
        "post": {
            "operationId": "lookupJobs",
            "summary": "Read several jobs named in the body (up to the batch size; a URL holds about 100 ids)",
            "parameters": [spec["paths"]["/v1/jobs"]["get"]["parameters"][1]],  # wait
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LookupRequest"}}},
            },
            "responses": {
                "200": spec["paths"]["/v1/jobs"]["get"]["responses"]["200"],
                "400": _problem("Malformed JSON (malformed-json) or invalid `wait`"),
                "413": _problem("Body too large (payload-too-large)"),
                "415": _problem("Not application/json (unsupported-media-type)"),
                "422": _problem(
                    f"Not an object with 1 to {max_jobs} string ids (validation-error, with `max_ids`), or the jobs "
                    "hold more than MAX_LOOKUP_RESULTS results (too-many-results, with `max_results`)"
                ),
                "500": _problem("Unexpected error"),
                "503": _problem("Redis unreachable", RETRY_AFTER),
            },
        }
    }
