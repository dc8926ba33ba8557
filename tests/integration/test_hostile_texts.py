"""Hostile product texts are categorized or refused cleanly, and none crashes a worker."""

from __future__ import annotations

import json

import pytest
import redis
import requests

from tests.integration.samples import OBVIOUS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PT = "urn:categorizer:problem:"

HOSTILE = {
    "control": "USB cable\x00\x01\x07\x1b[31m red\x7f\x9f charger\r\n\t",
    "nul_only": "\x00",
    "rtl": "\u202eregrahc\u202c \u200f\u200e\u2067 شاحن USB \u05de\u05d8\u05e2\u05df",
    "emoji": "👗🔌📚🧹 👩🏽‍💻 \U0001f1ee\U0001f1f3 t-shirt 😀" * 50,
    "zero_width": "\u200b\u200c\u200d\u2060\ufeff",
    "combining": "e\u0301" * 5000,
    "million_token": "x" * 1_000_000,
    "many_tokens": "word " * 100_000,
    "private_use": "\ue000\U000f0000\U0010fffd",
}


@pytest.fixture(scope="module")
def setup(redis_factory, worker_factory, server_factory):
    url = redis_factory(appendonly=False).url()
    worker = worker_factory(url)
    server = server_factory(url, MAX_TEXT_LENGTH=1_100_000)
    return url, worker, server


def test_hostile_texts_are_categorized_and_the_worker_survives(setup):
    url, worker, server = setup
    products = [{"id": name, "text": text} for name, text in HOSTILE.items()]
    # a lone surrogate is valid JSON (an escape) but not valid Unicode
    raw = json.dumps({"products": products}).encode()[:-2] + b',{"id":"surrogate","text":"\\ud800 lone"}]}'
    resp = requests.post(server.url + "/v1/jobs", data=raw, headers={"Content-Type": "application/json"}, timeout=30)
    assert resp.status_code == 202, resp.text
    job = requests.get(server.url + resp.headers["Location"], params={"wait": 30}, timeout=60).json()
    assert job["status"] == "succeeded", job
    assert [r["id"] for r in job["results"]] == [*HOSTILE, "surrogate"]
    for r in job["results"]:
        assert r["category"] in r["probabilities"] and 0 <= r["confidence"] <= 1
    # the worker is alive and still answers correctly
    ok = requests.post(
        server.url + "/v1/jobs", json={"products": [{"id": i, "text": t} for i, t, _ in OBVIOUS]}, timeout=10
    )
    done = requests.get(server.url + ok.headers["Location"], params={"wait": 30}, timeout=60).json()
    assert [r["category"] for r in done["results"]] == [c for _, _, c in OBVIOUS]
    assert worker.process.alive()
    log = worker.log_path.read_text(errors="replace")
    assert "WorkerLostError" not in log and "job_failed" not in log


@pytest.mark.parametrize(
    "body, status, slug",
    [
        (b'{"products":[{"text":"caf\xe9 \xff\xfe"}]}', 400, "malformed-json"),  # invalid UTF-8
        (b'\xef\xbb\xbf{"products":[{"text":"bom"}]}', 400, "malformed-json"),  # a BOM is not JSON
        (json.dumps({"products": [{"text": "y" * 1_100_001}]}).encode(), 422, "validation-error"),
        (json.dumps({"products": [{"text": " \t\n\u3000"}]}).encode(), 422, "validation-error"),
        (b'{"products":[{"text":"a"}]}' + b" \n" * 100, 202, None),
    ],
    ids=["invalid-utf8", "bom", "over-text-limit", "blank-unicode", "trailing-space"],
)
def test_invalid_encodings_and_limits_are_refused_cleanly(setup, body, status, slug):
    _, _, server = setup
    resp = requests.post(server.url + "/v1/jobs", data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert resp.status_code == status, resp.text
    if slug:
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert resp.json()["type"] == PT + slug and resp.json()["detail"]


def test_limits_refuse_before_work(setup):
    """Too many products is refused before any job is written (the body size limit, refused from
    Content-Length before the body is read, is test_service_api.py::test_oversized_body_refused_before_it_is_read)."""
    url, _, server = setup
    r = redis.Redis.from_url(url)

    def job_records() -> int:
        return sum(1 for k in r.scan_iter("categorizer:job:*", count=1000) if k.count(b":") == 2)

    before = job_records()
    resp = requests.post(server.url + "/v1/jobs", json={"products": [{"text": "a"}] * 1001}, timeout=30)
    assert resp.status_code == 422 and resp.json()["type"] == PT + "too-many-products"
    assert job_records() == before
