"""``GET /v1/model`` (the current bundle) and ``GET /v1/models`` (every bundle), read from the model dir.

The web tier reads the bundles' ``metrics.json`` and the ``current`` pointer from the model
directory (``CATEGORIZER_MODEL_DIR``, mounted read-only in docker-compose.yml); it loads no
model and imports no ONNX Runtime. The pointer names what workers serve once they have
switched (within ``CATEGORIZER_MODEL_CHECK_INTERVAL``); ``/readyz`` shows what each worker
process actually serves.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, jsonify

from web.problems import Problem

bp = Blueprint("models", __name__)


def _models_dir() -> Path:
    configured = current_app.config.get("MODEL_DIR")
    if configured:
        return Path(configured)
    from training.bundle import default_models_dir

    return default_models_dir()


@bp.get("/v1/model")
def current_model():
    """The current version: when it was trained, its data hash, its test scores."""
    from training.bundle import BundleError, read_current
    from training.registry import summary

    models = _models_dir()
    if not models.is_dir():
        raise Problem("service-unavailable", f"the model directory {models} does not exist")
    try:
        version = read_current(models)
    except BundleError as exc:
        raise Problem("service-unavailable", str(exc)) from None
    if not (models / version).is_dir():
        raise Problem("service-unavailable", f"the current pointer names {version!r}, which is not in {models}")
    return jsonify(summary(models, version, version))


@bp.get("/v1/models")
def list_models():
    """Every bundle in the model directory (oldest name first) and which one is current."""
    from training.registry import RegistryError, list_summaries

    try:
        current, rows = list_summaries(_models_dir())
    except RegistryError as exc:
        raise Problem("service-unavailable", str(exc)) from None
    return jsonify(current=current, models=rows)


@bp.get("/v1/models/<version>")
def get_model(version: str):
    """One bundle's summary."""
    from training.bundle import BundleError, list_versions, read_current
    from training.registry import summary

    models = _models_dir()
    if not models.is_dir():
        raise Problem("service-unavailable", f"the model directory {models} does not exist")
    if version not in list_versions(models):
        raise Problem("not-found", f"no model version {version!r}")
    try:
        current = read_current(models)
    except BundleError:
        current = None
    return jsonify(summary(models, version, current))


_SCORES = {
    "type": ["object", "null"],
    "properties": {"accuracy": {"type": "number"}, "macro_f1": {"type": "number"}},
}

#: OpenAPI schemas and paths of this blueprint (merged into web.openapi).
OPENAPI_SCHEMAS = {
    "ModelSummary": {
        "type": "object",
        "required": ["version", "current", "trained_at", "data", "test"],
        "properties": {
            "version": {"type": "string"},
            "current": {"type": "boolean", "description": "Named by the current pointer"},
            "trained_at": {"type": ["string", "null"], "format": "date-time"},
            "data": {
                "type": "object",
                "properties": {
                    "file": {"type": ["string", "null"]},
                    "sha256": {"type": ["string", "null"], "description": "SHA-256 of the training CSV"},
                },
            },
            "test": {**_SCORES, "description": "LSTM scores on the bundle's own test split"},
            "validation": _SCORES,
            "ood": {**_SCORES, "description": "Out-of-distribution set, when one was scored"},
            "hyperparameters": {"type": ["object", "null"]},
            "quality_gate": {
                "type": ["object", "null"],
                "description": "The gate's verdict recorded at training (null for bundles trained before it was)",
                "properties": {
                    "passed": {"type": ["boolean", "null"]},
                    "failures": {"type": "array", "items": {"type": "string"}},
                    "compared_with": {
                        "type": ["string", "null"],
                        "description": "The bundle that was current then (null: none, or it could not be scored)",
                    },
                    "basis": {
                        "type": ["string", "null"],
                        "enum": ["unseen_by_both", "recorded_scores", None],
                        "description": "unseen_by_both: both scored on the test texts neither had seen; "
                        "recorded_scores: the current bundle's recorded test scores",
                    },
                    "skipped": {"type": "string", "description": "Why the no-regression check did not run"},
                },
            },
            "error": {"type": "string", "description": "Present when metrics.json is unreadable"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["current", "models"],
        "properties": {
            "current": {"type": ["string", "null"]},
            "models": {"type": "array", "items": {"$ref": "#/components/schemas/ModelSummary"}},
        },
    },
}


def openapi_paths(problem) -> dict:
    """``problem(description)`` builds a problem response object (web.openapi._problem)."""

    def ok(schema: str, description: str) -> dict:
        return {"description": description, "content": {"application/json": {"schema": {"$ref": schema}}}}

    return {
        "/v1/model": {
            "get": {
                "operationId": "getCurrentModel",
                "summary": "The current model version, when it was trained, its data hash and test scores",
                "tags": ["models"],
                "responses": {
                    "200": ok("#/components/schemas/ModelSummary", "The current bundle"),
                    "503": problem("No model directory or no current version"),
                },
            }
        },
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "summary": "Every model version in the model directory and which is current",
                "tags": ["models"],
                "responses": {
                    "200": ok("#/components/schemas/ModelList", "The bundles, oldest name first"),
                    "503": problem("No model directory"),
                },
            }
        },
        "/v1/models/{version}": {
            "get": {
                "operationId": "getModel",
                "summary": "One model version",
                "tags": ["models"],
                "parameters": [{"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": ok("#/components/schemas/ModelSummary", "The bundle"),
                    "404": problem("No such version"),
                    "503": problem("No model directory"),
                },
            }
        },
    }


def extend(spec: dict) -> None:
    """Add this blueprint's paths and schemas to the OpenAPI document."""
    from web.openapi import _problem

    spec["paths"].update(openapi_paths(_problem))
    spec["components"]["schemas"].update(OPENAPI_SCHEMAS)
