"""The OpenAPI description of ``/v1/catalogs`` (merged into ``web.openapi.build_spec``)."""

from __future__ import annotations

from web.openapi import RETRY_AFTER, _problem

CATALOG_ID = {"name": "catalog_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


def _q(name: str, description: str, schema: dict | None = None) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def extend(spec: dict, config: dict) -> None:
    max_rows, max_bytes = config["MAX_CATALOG_ROWS"], config["MAX_CATALOG_BYTES"]
    max_text, chunk = config["CATALOG_MAX_TEXT_LENGTH"], config["CATALOG_CHUNK_SIZE"]
    catalog_json = {"application/json": {"schema": {"$ref": "#/components/schemas/Catalog"}}}
    spec["paths"]["/v1/catalogs"] = {
        "post": {
            "operationId": "submitCatalog",
            "summary": "Upload a catalog (CSV with a header, or JSON Lines), streamed",
            "description": f"The body is read as a stream and split into chunks of {chunk} rows, each "
            f"categorized by a worker. At most {max_rows} rows and {max_bytes} bytes; a row text longer "
            f"than {max_text} characters fails that row only. Bad rows (empty or over-long text, broken "
            "CSV quoting, invalid JSON on a line, invalid UTF-8) are reported per row in the results and "
            "counted in `failed_rows`; they never fail the catalog. CSV: the text is the `text` column, or "
            "`title` + `description` joined; `id` is echoed when present. JSON Lines: "
            '`{"id": ..., "text": ...}` per line.',
            "parameters": [
                _q("format", "Input format; default from Content-Type, else sniffed", {"enum": ["csv", "jsonl"]}),
                _q("text_column", "Column (CSV) or key (JSONL) of the text (default `text`)"),
                _q("title_column", "Column/key of the title, joined with the description"),
                _q("description_column", "Column/key of the description (default `description`)"),
                _q("id_column", "Column/key of the client id (default `id`)"),
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "202": {
                    "description": "Catalog read to its end, chunks queued",
                    "headers": {"Location": {"description": "URL of the catalog", "schema": {"type": "string"}}},
                    "content": catalog_json,
                },
                "400": _problem("Invalid query parameter, or the upload ended early (upload-interrupted)"),
                "404": _problem("The catalog was deleted while it was being uploaded"),
                "413": _problem("More bytes or rows than allowed (catalog-too-large)"),
                "415": _problem("Not a CSV or JSON Lines catalog at all (not-a-catalog)"),
                "422": _problem("The CSV header lacks the text column (missing-column), or no rows (empty-catalog)"),
                "429": _problem(
                    f"This client already has {config['MAX_CONCURRENT_CATALOGS']} unfinished catalogs "
                    "(MAX_CONCURRENT_CATALOGS; too-many-catalogs), checked before the upload is read; or its "
                    "rate limit is exceeded",
                    RETRY_AFTER,
                ),
                "500": _problem("Unexpected error"),
                "503": _problem("Redis unreachable", RETRY_AFTER),
            },
        }
    }
    spec["paths"]["/v1/catalogs/{catalog_id}"] = {
        "get": {
            "operationId": "getCatalog",
            "summary": "Progress of a catalog",
            "parameters": [CATALOG_ID],
            "responses": {
                "200": {
                    "description": "The catalog",
                    "headers": {"Retry-After": {"description": "While not finished", "schema": {"type": "integer"}}},
                    "content": catalog_json,
                },
                "404": _problem("Unknown, deleted or expired catalog"),
                "500": _problem("Unexpected error"),
                "503": _problem("Redis unreachable", RETRY_AFTER),
            },
        },
        "delete": {
            "operationId": "deleteCatalog",
            "summary": "Cancel a catalog and delete its data (pending chunks are skipped)",
            "parameters": [CATALOG_ID],
            "responses": {
                "200": {
                    "description": "Cancelled (if it was not finished) and deleted; then the catalog is 404",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CatalogDeleted"}}},
                },
                "404": _problem("Unknown, deleted or expired catalog"),
                "500": _problem("Unexpected error"),
                "503": _problem("Redis unreachable", RETRY_AFTER),
            },
        },
    }
    spec["paths"]["/v1/catalogs/{catalog_id}/results"] = {
        "get": {
            "operationId": "getCatalogResults",
            "summary": "Download the results, streamed, in input order",
            "description": "One record per input row: `row` (1-based), `id`, `category`, `confidence`, the "
            "probability of every category (CSV: `p_<category>` columns; JSONL: `probabilities`), "
            "`model_version`, `error` (empty unless the row failed) and `needs_review` (CSV `true`/`false`, "
            "JSONL a boolean; empty/null for a failed row): the confidence is below REVIEW_THRESHOLD "
            f"({config['REVIEW_THRESHOLD']} on this server), as for interactive results.",
            "parameters": [CATALOG_ID, _q("format", "Result format (default csv)", {"enum": ["csv", "jsonl"]})],
            "responses": {
                "200": {
                    "description": "The results",
                    # streamed text; no JSON schema (see the description for the columns)
                    "content": {"text/csv": {}, "application/x-ndjson": {}},
                },
                "400": _problem("Invalid `format`"),
                "404": _problem("Unknown, deleted or expired catalog"),
                "409": _problem("Not finished yet (catalog-not-finished)", RETRY_AFTER),
                "500": _problem("Unexpected error"),
                "503": _problem("Redis unreachable", RETRY_AFTER),
            },
        }
    }
    nullable_num = {"type": ["number", "null"]}
    spec["components"]["schemas"]["CatalogDeleted"] = {
        "type": "object",
        "required": ["catalog_id", "deleted", "cancelled", "previous_status"],
        "properties": {
            "catalog_id": {"type": "string", "format": "uuid"},
            "deleted": {"const": True},
            "cancelled": {"type": "boolean", "description": "It was queued or running: pending chunks are skipped"},
            "previous_status": {"type": "string"},
        },
    }
    spec["components"]["schemas"]["Catalog"] = {
        "type": "object",
        "required": ["catalog_id", "status", "total", "done", "failed_rows", "cached_rows", "submitted_at"],
        "properties": {
            "catalog_id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "ingested": {"type": "boolean", "description": "The upload has been read to its end"},
            "total": {"type": "integer", "description": "Rows read so far (all rows once ingested)"},
            "done": {"type": "integer", "description": "Rows with a result (or a row error)"},
            "failed_rows": {"type": "integer"},
            "cached_rows": {"type": "integer", "description": "Rows answered from the result cache"},
            "inferences": {"type": "integer", "description": "Texts run through the model"},
            "chunks": {"type": "integer"},
            "chunks_done": {"type": "integer"},
            "rows_per_s": nullable_num,
            "eta_s": {**nullable_num, "description": "Seconds until done at the current rate"},
            "model_version": {
                "type": ["string", "null"],
                "description": "The version of the most recently finished chunk (each row carries its own)",
            },
            "model_versions": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "Rows categorized by each model version; more than one when the catalog spans a "
                "model refresh",
            },
            "submitted_at": {"type": "string", "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "error": {"type": "string", "description": "Why a catalog failed"},
        },
    }
