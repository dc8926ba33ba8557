"""The OpenAPI document names every route of the Flask URL map, with the same methods."""

from __future__ import annotations

import re

from web import create_app

DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_every_route_is_documented():
    app = create_app({"REDIS_URL": DEAD_REDIS})
    spec = app.test_client().get("/openapi.json").get_json()
    assert spec["openapi"] == "3.1.0"
    routes = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        routes[path] = {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert set(routes) == set(spec["paths"])
    for path, methods in routes.items():
        assert methods == set(spec["paths"][path]), path
        for method in methods:
            op = spec["paths"][path][method]
            assert op["responses"], (path, method)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"\{([^}]+)\}", path)), (path, method)


def test_refs_resolve_and_limits_follow_config():
    app = create_app({"REDIS_URL": DEAD_REDIS, "MAX_PRODUCTS": 12, "MAX_TEXT_LENGTH": 34})
    spec = app.test_client().get("/openapi.json").get_json()
    text = str(spec)
    for ref in re.findall(r"#/components/schemas/(\w+)", text):
        assert ref in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["JobRequest"]["properties"]["products"]["maxItems"] == 12
    assert spec["components"]["schemas"]["Product"]["properties"]["text"]["maxLength"] == 34
