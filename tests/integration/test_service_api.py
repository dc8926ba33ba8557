"""The job API against real Redis, a real Celery worker with the shipped bundle, over HTTP."""

from __future__ import annotations

import json
import re
import socket
import uuid

import pytest
import redis

from tests.integration.samples import OBVIOUS
from web.client import Client, ProblemError
from worker.jobstore import job_key

pytestmark = pytest.mark.integration

PT = "urn:categorizer:problem:"


def submit(api, products, **kwargs):
    resp = api.post("/v1/jobs", json={"products": products}, **kwargs)
    assert resp.status_code == 202, resp.text
    return resp


def wait_result(api, job_id, wait=10):
    resp = api.get(f"/v1/jobs/{job_id}", params={"wait": wait})
    assert resp.status_code == 200, resp.text
    return resp.json()


def assert_problem(resp, status: int, slug: str):
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    body = resp.json()
    assert body["type"] == PT + slug
    assert body["status"] == status
    assert body["title"]
    return body


# -- the happy path --------------------------------------------------------------------------


def test_submit_poll_result_obvious_products(api):
    products = [{"id": pid, "text": text} for pid, text, _ in OBVIOUS]
    resp = submit(api, products)
    body = resp.json()
    job_id = body["job_id"]
    assert body["status"] == "queued"
    assert uuid.UUID(job_id).version == 4
    assert resp.headers["Location"].endswith(f"/v1/jobs/{job_id}")

    job = wait_result(api, job_id)
    assert job["status"] == "succeeded", job
    assert job["job_id"] == job_id
    assert job["finished_at"] and job["submitted_at"]
    assert job["model_version"]
    results = job["results"]
    assert [r["id"] for r in results] == [pid for pid, _, _ in OBVIOUS]
    assert [r["category"] for r in results] == [cat for _, _, cat in OBVIOUS]
    for r in results:
        assert set(r["probabilities"]) == {"Electronics", "Household", "Books", "Clothing & Accessories"}
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-4
        assert r["confidence"] == max(r["probabilities"].values())
        assert r["model_version"] == job["model_version"]


def test_order_and_ids_kept_with_duplicates_and_missing_ids(api):
    texts = [t for _, t, _ in OBVIOUS]
    products = [
        {"id": 7, "text": texts[2]},
        {"text": texts[0]},
        {"id": "b", "text": texts[2]},  # same text again: one inference, same answer
        {"id": "c", "text": texts[3], "extra": "ignored"},
    ]
    job = wait_result(api, submit(api, products).json()["job_id"])
    assert job["status"] == "succeeded"
    assert [r["id"] for r in job["results"]] == [7, None, "b", "c"]
    assert [r["category"] for r in job["results"]] == ["Books", "Electronics", "Books", "Household"]
    assert job["results"][0]["probabilities"] == job["results"][2]["probabilities"]


def test_long_poll_returns_finished_job(api):
    job_id = submit(api, [{"text": OBVIOUS[0][1]}]).json()["job_id"]
    job = api.get(f"/v1/jobs/{job_id}?wait=30").json()
    assert job["status"] == "succeeded"
    assert job["results"][0]["category"] == "Electronics"
    # a finished job answers at once, also with a wait
    tiny = api.get(f"/v1/jobs/{job_id}?wait=0.0001")  # rounds to 0 ms: must not block forever
    assert tiny.json()["status"] == "succeeded"
    again = api.get(f"/v1/jobs/{job_id}?wait=5")
    assert again.json() == job
    assert "Retry-After" not in again.headers


def test_worker_writes_a_structured_batch_log_line(api, worker):
    job_id = submit(api, [{"text": "a cotton shirt"}]).json()["job_id"]
    job = wait_result(api, job_id)
    log = worker.log_path.read_text()
    line = next(line for line in log.splitlines() if f"batch job_id={job_id}" in line)
    assert "size=1" in line and "latency_ms=" in line and f"model_version={job['model_version']}" in line


def test_idempotency_key_returns_the_same_job(api):
    key = f"test-{uuid.uuid4()}"
    products = [{"id": "x", "text": OBVIOUS[1][1]}]
    first = submit(api, products, headers={"Idempotency-Key": key})
    second = submit(api, products, headers={"Idempotency-Key": key})
    assert first.json()["job_id"] == second.json()["job_id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.headers["Location"] == first.headers["Location"]
    other = submit(api, products, headers={"Idempotency-Key": f"other-{key}"})
    assert other.json()["job_id"] != first.json()["job_id"]
    # same key, different body: refused
    reused = api.post("/v1/jobs", json={"products": [{"text": "else"}]}, headers={"Idempotency-Key": key})
    body = assert_problem(reused, 422, "idempotency-key-reused")
    assert body["job_id"] == first.json()["job_id"]
    bad = api.post("/v1/jobs", json={"products": products}, headers={"Idempotency-Key": "x" * 300})
    assert_problem(bad, 400, "invalid-header")


def test_redelivered_task_does_not_duplicate_results(api, live_server, redis_url):
    """At-least-once delivery: sending the same job's task again changes nothing."""
    products = [{"id": "only", "text": OBVIOUS[3][1]}]
    job_id = submit(api, products).json()["job_id"]
    first = wait_result(api, job_id)
    from worker.celery_app import CATEGORIZE_TASK

    celery = live_server.app.extensions["categorizer"].celery
    celery.send_task(CATEGORIZE_TASK, args=(job_id, products), queue="interactive")
    # a later job proves the worker has handled the duplicate (one process, FIFO queue)
    wait_result(api, submit(api, [{"text": "x"}]).json()["job_id"])
    second = wait_result(api, job_id)
    assert second["results"] == first["results"]
    assert len(second["results"]) == 1
    assert second["finished_at"] == first["finished_at"]
    # and a task for an unknown or expired job does not create a record
    ghost = str(uuid.uuid4())
    celery.send_task(CATEGORIZE_TASK, args=(ghost, products), queue="interactive")
    wait_result(api, submit(api, [{"text": "y"}]).json()["job_id"])
    assert redis.Redis.from_url(redis_url).exists(job_key(ghost)) == 0
    assert api.get(f"/v1/jobs/{ghost}").status_code == 404


# -- bad input ---------------------------------------------------------------------------------


def post_raw(api, data, content_type="application/json"):
    return api.post("/v1/jobs", data=data, headers={"Content-Type": content_type})


def test_malformed_json(api):
    for data in ('{"products": [', "not json", b"\xff\xfe{}", ""):
        assert_problem(post_raw(api, data), 400, "malformed-json")


def test_wrong_content_type(api):
    assert_problem(post_raw(api, '{"products": [{"text": "x"}]}', "text/plain"), 415, "unsupported-media-type")


@pytest.mark.parametrize(
    ("body", "pointer", "code"),
    [
        ({}, "/products", "required"),
        ({"products": None}, "/products", "type"),
        ({"products": "a text"}, "/products", "type"),
        ({"products": []}, "/products", "empty"),
        ([{"text": "x"}], "", "type"),
        ({"products": [{"text": "ok"}, {"id": "no text"}]}, "/products/1/text", "required"),
        ({"products": [{"text": "ok"}, {"text": None}]}, "/products/1/text", "required"),
        ({"products": [{"text": ""}]}, "/products/0/text", "empty"),
        ({"products": [{"text": "   \n"}]}, "/products/0/text", "empty"),
        ({"products": [{"text": 42}]}, "/products/0/text", "type"),
        ({"products": [{"text": ["a"]}]}, "/products/0/text", "type"),
        ({"products": ["just a string"]}, "/products/0", "type"),
        ({"products": [{"text": "ok"}, {"text": "ok", "id": {"a": 1}}]}, "/products/1/id", "type"),
        ({"products": [{"text": "ok"}, {"text": "ok"}, {"text": "x" * 20001}]}, "/products/2/text", "too_long"),
    ],
)
def test_invalid_products(api, body, pointer, code):
    problem = assert_problem(api.post("/v1/jobs", json=body), 422, "validation-error")
    assert {"pointer": pointer, "code": code} == {k: problem["errors"][0][k] for k in ("pointer", "code")}
    assert problem["errors"][0]["detail"]


def test_all_errors_are_reported(api):
    body = {"products": [{"text": ""}, {"text": "fine"}, {"text": 3}]}
    problem = assert_problem(api.post("/v1/jobs", json=body), 422, "validation-error")
    assert [e["pointer"] for e in problem["errors"]] == ["/products/0/text", "/products/2/text"]


def test_text_at_the_limit_is_accepted(api):
    resp = submit(api, [{"text": "cotton shirt " + "y" * (20000 - 13)}])
    assert wait_result(api, resp.json()["job_id"])["status"] == "succeeded"


def test_too_many_products(api):
    problem = assert_problem(api.post("/v1/jobs", json={"products": [{"text": "x"}] * 1001}), 422, "too-many-products")
    assert problem["errors"][0]["pointer"] == "/products"
    assert problem["max_products"] == 1000


def test_oversized_body_refused(server_factory, redis_url, openapi_spec):
    from tests.integration.conftest import checked_session

    small = server_factory(redis_url, MAX_CONTENT_LENGTH=10_000)
    api = checked_session(small.url, openapi_spec)
    body = {"products": [{"text": "z" * 2000} for _ in range(10)]}
    problem = assert_problem(api.post("/v1/jobs", json=body), 413, "payload-too-large")
    assert "10000" in problem["detail"]


def test_oversized_body_refused_before_it_is_read(live_server):
    """Only the headers are sent: the answer comes from Content-Length alone."""
    host, port = live_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert b"application/problem+json" in data


def test_unknown_job_is_404(api):
    problem = assert_problem(api.get(f"/v1/jobs/{uuid.uuid4()}"), 404, "job-not-found")
    assert "unknown" in problem["detail"]


@pytest.mark.parametrize("job_id", ["not-a-uuid", "123", "0" * 40, "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
def test_malformed_job_id_is_404(api, job_id):
    assert_problem(api.get(f"/v1/jobs/{job_id}"), 404, "job-not-found")


def test_expired_job_is_404(api, redis_url):
    job_id = submit(api, [{"text": "a novel"}]).json()["job_id"]
    wait_result(api, job_id)
    redis.Redis.from_url(redis_url).delete(job_key(job_id))  # what the retention TTL does
    assert_problem(api.get(f"/v1/jobs/{job_id}"), 404, "job-not-found")


def test_record_has_a_retention_ttl(api, redis_url):
    job_id = submit(api, [{"text": "a novel"}]).json()["job_id"]
    wait_result(api, job_id)
    ttl = redis.Redis.from_url(redis_url).ttl(job_key(job_id))
    assert 0 < ttl <= 86400


@pytest.mark.parametrize("wait", ["abc", "-1", "nan", "inf"])
def test_invalid_wait(api, wait):
    job_id = submit(api, [{"text": "a novel"}]).json()["job_id"]
    problem = assert_problem(api.get(f"/v1/jobs/{job_id}", params={"wait": wait}), 400, "invalid-parameter")
    assert problem["errors"][0]["parameter"] == "wait"


def test_unknown_route_and_method(api):
    assert_problem(api.get("/nope"), 404, "not-found")
    resp = api.delete("/v1/jobs")
    assert_problem(resp, 405, "method-not-allowed")
    assert "POST" in resp.headers["Allow"]
    assert_problem(api.put(f"/v1/jobs/{uuid.uuid4()}"), 405, "method-not-allowed")


# -- back-pressure, readiness, long-poll without workers ----------------------------------------


def test_queue_depth_limit_answers_503(server_factory, redis_url, openapi_spec):
    from tests.integration.conftest import checked_session

    queue = f"test-full-{uuid.uuid4().hex[:8]}"  # no worker consumes it
    server = server_factory(redis_url, QUEUE=queue, MAX_QUEUE_DEPTH=2, RETRY_AFTER=7)
    api = checked_session(server.url, openapi_spec)
    try:
        accepted = [submit(api, [{"text": f"p{i}"}]).json()["job_id"] for i in range(3)]
        resp = api.post("/v1/jobs", json={"products": [{"text": "one too many"}]})
        problem = assert_problem(resp, 503, "queue-full")
        assert resp.headers["Retry-After"] == "7"
        assert problem["queue_depth"] == 3
        # the waiting jobs stay queued; a bounded long-poll returns them unfinished
        resp = api.get(f"/v1/jobs/{accepted[0]}", params={"wait": "0.3"})
        assert resp.json()["status"] == "queued"
        assert resp.headers["Retry-After"] == "1"
    finally:
        redis.Redis.from_url(redis_url).delete(queue)


def test_readyz_follows_workers_and_redis(redis_factory, server_factory, worker_factory, openapi_spec):
    from tests.integration.conftest import checked_session

    private = redis_factory()
    server = server_factory(private.url())
    api = checked_session(server.url, openapi_spec)
    assert api.get("/healthz").json() == {"status": "ok"}

    problem = assert_problem(api.get("/readyz"), 503, "not-ready")
    assert problem["checks"]["redis"]["status"] == "ok"
    assert problem["checks"]["workers"]["count"] == 0

    handle = worker_factory(private.url())
    ready = api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["workers"]["count"] == 1

    handle.stop()
    problem = assert_problem(api.get("/readyz"), 503, "not-ready")
    assert problem["checks"]["workers"]["count"] == 0

    private.stop()
    problem = assert_problem(api.get("/readyz"), 503, "not-ready")
    assert problem["checks"]["redis"]["status"] == "error"
    assert api.get("/healthz").status_code == 200
    # with Redis gone, job requests answer 503 problems, not 500
    assert_problem(api.post("/v1/jobs", json={"products": [{"text": "x"}]}), 503, "service-unavailable")
    assert_problem(api.get(f"/v1/jobs/{uuid.uuid4()}"), 503, "service-unavailable")


# -- OpenAPI -------------------------------------------------------------------------------------


def test_openapi_document(api, live_server):
    spec = api.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    rules = {
        re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule): rule.methods - {"HEAD", "OPTIONS"}
        for rule in live_server.app.url_map.iter_rules()
    }
    assert set(rules) == set(spec["paths"])
    for path, methods in rules.items():
        assert {m.lower() for m in methods} == set(spec["paths"][path]), path


# -- the Python client and the CLI ---------------------------------------------------------------


def test_client_submit_wait_results(live_server):
    client = Client(live_server.url)
    job = client.submit([OBVIOUS[0][1], {"id": "s", "text": OBVIOUS[1][1]}])
    assert job.status == "queued"
    results = job.wait(timeout=30).results()
    assert job.done and job.status == "succeeded"
    assert [r["category"] for r in results] == ["Electronics", "Clothing & Accessories"]
    assert [r["id"] for r in results] == [None, "s"]
    assert client.categorize([OBVIOUS[2][1]])[0]["category"] == "Books"
    assert client.health() == {"status": "ok"}
    assert client.ready()["status"] == "ready"


def test_client_raises_problem_details(live_server):
    client = Client(live_server.url)
    with pytest.raises(ProblemError) as exc:
        client.submit([{"text": ""}])
    assert exc.value.status == 422
    assert exc.value.type == PT + "validation-error"
    assert exc.value.errors[0]["pointer"] == "/products/0/text"
    with pytest.raises(ProblemError) as exc:
        client.job(str(uuid.uuid4()))
    assert exc.value.status == 404


def test_cli_submit(live_server, tmp_path):
    import subprocess
    import sys

    products = tmp_path / "products.jsonl"
    products.write_text(
        json.dumps({"id": "p1", "text": OBVIOUS[2][1]}) + "\n\n" + OBVIOUS[3][1] + "\n", encoding="utf-8"
    )
    cmd = [sys.executable, "-m", "web.cli", "submit", "--url", live_server.url]
    proc = subprocess.run([*cmd, OBVIOUS[0][1], "--file", str(products)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["id"], r["category"]) for r in lines] == [(None, "Electronics"), ("p1", "Books"), (None, "Household")]
    assert all(r["model_version"] for r in lines)

    bad = subprocess.run([*cmd, "--file", "-"], input="\n", capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    too_long = subprocess.run([*cmd, "x" * 20001], capture_output=True, text=True, timeout=60)
    assert too_long.returncode == 1
    assert "/products/0/text" in too_long.stderr
