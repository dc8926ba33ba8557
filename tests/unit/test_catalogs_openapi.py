"""The OpenAPI description of the catalog endpoints documents their answers."""

from __future__ import annotations

from web import create_app

DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_submit_catalog_documents_too_many_catalogs():
    app = create_app({"REDIS_URL": DEAD_REDIS, "MAX_CONCURRENT_CATALOGS": 3})
    spec = app.test_client().get("/openapi.json").get_json()
    answer = spec["paths"]["/v1/catalogs"]["post"]["responses"]["429"]
    assert "too-many-catalogs" in answer["description"] and "3 unfinished" in answer["description"]
    assert "Retry-After" in answer["headers"]
