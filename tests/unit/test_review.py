"""needs_review: below the threshold is true, at or above it false; the default comes from config."""

from __future__ import annotations

import json

from web import create_app
from web.review import DEFAULT_REVIEW_THRESHOLD, mark_results, mark_results_json, needs_review


def test_threshold_is_a_strict_lower_bound():
    assert needs_review(0.89, 0.9) is True
    assert needs_review(0.9, 0.9) is False
    assert needs_review(1.0, 1.01) is True
    assert needs_review(0.0, 0.0) is False


def test_marks_every_result_and_keeps_the_rest():
    results = [{"id": 1, "confidence": 0.5}, {"id": 2, "confidence": 0.95}]
    assert [r["needs_review"] for r in mark_results(results, 0.9)] == [True, False]
    raw = json.dumps([{"id": "a", "category": "Books", "confidence": 0.7}])
    assert json.loads(mark_results_json(raw, 0.6)) == [
        {"id": "a", "category": "Books", "confidence": 0.7, "needs_review": False}
    ]
    assert mark_results_json("[]", 0.9) == "[]"


def test_config_default_and_environment(monkeypatch):
    dead = {"REDIS_URL": "redis://127.0.0.1:1/0"}
    assert create_app(dead).config["REVIEW_THRESHOLD"] == DEFAULT_REVIEW_THRESHOLD
    monkeypatch.setenv("CATEGORIZER_REVIEW_THRESHOLD", "0.75")
    app = create_app(dead)
    assert app.config["REVIEW_THRESHOLD"] == 0.75
    spec = app.test_client().get("/openapi.json").get_json()
    assert "needs_review" in spec["components"]["schemas"]["Result"]["required"]
    assert "0.75" in spec["components"]["schemas"]["Result"]["properties"]["needs_review"]["description"]
