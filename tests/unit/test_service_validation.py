"""Request validation and problem details of the job API, without any service running."""

from __future__ import annotations

import pytest

from web import create_app
from web.cli_submit import read_products
from web.client import ProblemError
from web.problems import Problem
from web.validation import validate_job_body

PT = "urn:categorizer:problem:"
# nothing listens there: any Redis access would fail fast with a 503 problem
DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def app():
    return create_app(
        {
            "REDIS_URL": DEAD_REDIS,
            "TESTING": True,
            "MAX_PRODUCTS": 3,
            "MAX_TEXT_LENGTH": 10,
            "MAX_CONTENT_LENGTH": 250_000,
        }
    )


@pytest.fixture
def client(app):
    return app.test_client()


def problem(resp, status, slug):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json(force=True)
    assert body["type"] == PT + slug and body["status"] == status and body["title"]
    return body


def test_validate_cleans_products():
    out = validate_job_body({"products": [{"id": 1, "text": "a", "x": 2}, {"text": "b"}]}, 5, 10)
    assert out == [{"id": 1, "text": "a"}, {"id": None, "text": "b"}]


@pytest.mark.parametrize(
    ("body", "slug", "pointer"),
    [
        ({"products": [{"text": "a"}] * 4}, "too-many-products", "/products"),
        ({"products": [{"text": "a" * 11}]}, "validation-error", "/products/0/text"),
        ({"products": [{"text": "a", "id": True}]}, "validation-error", "/products/0/id"),
        ({"products": [{"text": "a", "id": "i" * 257}]}, "validation-error", "/products/0/id"),
        ({"products": [1]}, "validation-error", "/products/0"),
    ],
)
def test_validate_rejects(body, slug, pointer):
    with pytest.raises(Problem) as exc:
        validate_job_body(body, 3, 10)
    assert exc.value.slug == slug
    assert exc.value.extra["errors"][0]["pointer"] == pointer


def test_errors_are_capped():
    with pytest.raises(Problem) as exc:
        validate_job_body({"products": [{"text": ""}] * 500}, 1000, 10)
    assert len(exc.value.extra["errors"]) == 50


def test_http_validation_problems(client):
    problem(client.post("/v1/jobs", data="{", content_type="application/json"), 400, "malformed-json")
    problem(client.post("/v1/jobs", data="{}", content_type="text/plain"), 415, "unsupported-media-type")
    body = problem(client.post("/v1/jobs", json={"products": [{"text": "ok"}, {"text": ""}]}), 422, "validation-error")
    assert body["errors"] == [{"pointer": "/products/1/text", "code": "empty", "detail": "must not be empty"}]
    assert body["instance"] == "/v1/jobs"
    problem(client.post("/v1/jobs", json={"products": [{"text": "a"}] * 4}), 422, "too-many-products")
    problem(
        client.post("/v1/jobs", json={"products": [{"text": "a" * 5}] * 3, "pad": "p" * 300_000}),
        413,
        "payload-too-large",
    )


def test_deeply_nested_json_is_a_400(client):
    body = "[" * 100_000 + "]" * 100_000
    problem(client.post("/v1/jobs", data=body, content_type="application/json"), 400, "malformed-json")


def test_http_error_handlers(client):
    problem(client.get("/nowhere"), 404, "not-found")
    resp = client.patch("/v1/jobs")
    problem(resp, 405, "method-not-allowed")
    assert "POST" in resp.headers["Allow"]
    problem(client.get("/v1/jobs/not-a-uuid"), 404, "job-not-found")
    problem(client.get("/v1/jobs/6f9619ff8b86d011b42d00c04fc964ff"), 404, "job-not-found")


def test_redis_down_is_503_not_500(client):
    resp = client.post("/v1/jobs", json={"products": [{"text": "a"}]})
    problem(resp, 503, "service-unavailable")
    assert resp.headers["Retry-After"]
    problem(client.get("/v1/jobs/0b8e4ff4-2fd3-4b7a-9e2e-6d6a1f8a8d11"), 503, "service-unavailable")
    body = problem(client.get("/readyz"), 503, "not-ready")
    assert body["checks"]["redis"]["status"] == "error"
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_unexpected_error_is_500_problem(app):
    @app.get("/boom")
    def boom():
        raise ZeroDivisionError

    body = problem(app.test_client().get("/boom"), 500, "internal-error")
    assert "ZeroDivision" not in str(body)


def test_config_from_environment(monkeypatch):
    monkeypatch.setenv("CATEGORIZER_MAX_PRODUCTS", "7")
    monkeypatch.setenv("CATEGORIZER_QUEUE", "other")
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/3")
    app = create_app()
    assert app.config["MAX_PRODUCTS"] == 7
    assert app.config["QUEUE"] == "other"
    assert app.config["REDIS_URL"] == "redis://example:6379/3"
    assert create_app({"MAX_PRODUCTS": 9}).config["MAX_PRODUCTS"] == 9


def test_web_tier_does_not_import_the_model_runtime():
    import subprocess
    import sys

    code = (
        "import sys; from web import create_app; create_app(); import web.client, web.cli_submit; "
        "bad = [m for m in ('onnxruntime', 'tensorflow', 'worker.model', 'worker.tasks') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_read_products_mixes_json_lines_and_text():
    lines = ['{"id": "a", "text": "one"}\n', "\n", "plain text line\n", "{not json\n"]
    assert read_products(lines) == [{"id": "a", "text": "one"}, {"text": "plain text line"}, {"text": "{not json"}]


def test_problem_error_carries_details():
    exc = ProblemError(
        422,
        {"type": PT + "validation-error", "title": "t", "detail": "d", "errors": [{"pointer": "/products"}]},
        {"Retry-After": "3"},
    )
    assert exc.errors[0]["pointer"] == "/products" and exc.retry_after == 3.0
    assert "422" in str(exc)


@pytest.mark.parametrize(
    "error, status, slug",
    [
        ("ConnectionError", 503, "service-unavailable"),
        ("TimeoutError", 503, "service-unavailable"),
        ("BusyLoadingError", 503, "service-unavailable"),
        ("ReadOnlyError", 503, "service-unavailable"),
        ("ResponseError", 500, "internal-error"),  # a script error: a bug, not worth a retry
        ("DataError", 500, "internal-error"),
    ],
)
def test_only_unavailable_redis_is_503(error, status, slug):
    import redis

    app = create_app({"REDIS_URL": DEAD_REDIS, "TESTING": False})

    @app.get("/raise")
    def _raise():
        raise getattr(redis.exceptions, error)("boom")

    resp = app.test_client().get("/raise")
    problem(resp, status, slug)
    assert ("Retry-After" in resp.headers) == (status == 503)
