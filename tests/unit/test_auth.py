"""API keys (web.auth): parsing, constant-time lookup, 401 problems, open routes. No Redis needed."""

from __future__ import annotations

import pytest

from web import create_app
from web.auth import identify, parse_keys

DEAD_REDIS = "redis://127.0.0.1:1/0"
PT = "urn:categorizer:problem:"


def test_parse_keys_env_and_file_forms():
    assert parse_keys("alice:k1, bob:k2") == {"k1": "alice", "k2": "bob"}
    assert parse_keys("# comment\nalice:k1\n\nbob:k2\n") == {"k1": "alice", "k2": "bob"}
    assert parse_keys("") == {}
    with pytest.raises(ValueError):
        parse_keys("alice")
    with pytest.raises(ValueError):
        parse_keys("alice:k1,bob:k1")


def test_identify():
    keys = {"k1": "alice", "k2": "bob"}
    assert identify(keys, "k2") == "bob"
    assert identify(keys, "k") is None
    assert identify(keys, None) is None
    assert identify(keys, "k1\udcff") is None  # undecodable header bytes never crash


def test_keys_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text("carol:secret-c\n", encoding="utf-8")
    app = create_app({"REDIS_URL": DEAD_REDIS, "API_KEYS_FILE": str(path)})
    assert app.extensions["categorizer.auth"] == {"secret-c": "carol"}


@pytest.fixture
def client():
    return create_app({"REDIS_URL": DEAD_REDIS, "API_KEYS": "alice:key-a"}).test_client()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "key-b"}, {"Authorization": "Basic a2V5LWE="}],
)
def test_missing_or_wrong_key_is_401_problem(client, headers):
    for method, path in (("post", "/v1/jobs"), ("get", "/v1/jobs/00000000-0000-4000-8000-000000000000")):
        resp = getattr(client, method)(path, json={"products": [{"text": "x"}]}, headers=headers)
        assert resp.status_code == 401
        assert resp.mimetype == "application/problem+json"
        body = resp.get_json()
        assert body["type"] == PT + "unauthorized" and body["status"] == 401 and body["detail"]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_valid_key_passes_authentication(client):
    # past authentication the request reaches validation (Redis is not needed to refuse it)
    for headers in ({"Authorization": "Bearer key-a"}, {"X-API-Key": "key-a"}):
        resp = client.post("/v1/jobs", json={"products": []}, headers=headers)
        assert resp.status_code == 422, resp.get_data(as_text=True)


def test_open_routes_need_no_key(client):
    assert client.get("/healthz").status_code == 200
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    doc = spec.get_json()
    assert {"bearerKey", "headerKey"} <= set(doc["components"]["securitySchemes"])
    for path, ops in doc["paths"].items():
        if path.startswith("/v1/"):
            for op in ops.values():
                assert {"401", "429"} <= set(op["responses"]), path
                assert op["security"]


def test_non_ascii_keys_and_client_names():
    """A key and a client name with non-ASCII characters: the key authenticates from the UTF-8
    bytes a client sends (WSGI hands them over as latin-1 text), and ownership checks compare
    names as bytes (hmac.compare_digest refuses non-ASCII str)."""
    from flask import g

    from web.auth import check_owner

    keys = parse_keys("müller:clé-ü,bob:k2")
    sent = "clé-ü".encode().decode("latin-1")
    assert identify(keys, sent) == "müller"
    app = create_app({"REDIS_URL": DEAD_REDIS, "API_KEYS": "müller:clé-ü,bob:k2"})
    with app.test_request_context():
        g.client_id = "müller"
        assert check_owner({"owner": "müller"}) and not check_owner({"owner": "bob"})
        g.client_id = "bob"
        assert not check_owner({"owner": "müller"})
    resp = app.test_client().post("/v1/jobs", json={"products": []}, headers={"X-API-Key": sent})
    assert resp.status_code == 422  # authenticated: the request reached validation
