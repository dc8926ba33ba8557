"""Many jobs per request (web/batch.py): ``POST /v1/jobs:batch``, ``GET /v1/jobs?ids=&wait=``,
``POST /v1/jobs:lookup``,
``Client.submit_many``/``wait_all``, and the task message the web tier builds (web/publish.py).

Real Redis, a real ``celery worker`` (micro-batch and per-job queues), real HTTP; every response
is checked against /openapi.json. Correctness only, no timing.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import redis
import requests

from tests.integration.conftest import checked_session
from tests.integration.samples import OBVIOUS
from web.client import Client, ProblemError
from web.publish import task_message
from worker.celery_app import BATCH_QUEUE, CATEGORIZE_BATCH_TASK, CATEGORIZE_TASK, INTERACTIVE_QUEUE, make_celery

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def service(redis_factory, worker_factory, server_factory):
    url = redis_factory().url()
    worker_factory(url, queues=(INTERACTIVE_QUEUE, BATCH_QUEUE))
    server = server_factory(url, MICROBATCH=True, MICROBATCH_MAX_PRODUCTS=2, MAX_BATCH_JOBS=50)
    spec = requests.get(server.url + "/openapi.json", timeout=10).json()
    return server, checked_session(server.url, spec), url


def test_batch_submit_each_entry_is_its_own_job(service):
    server, api, url = service
    entries = [{"id": pid, "text": text} for pid, text, _ in OBVIOUS]  # one-product shorthand
    entries.append({"products": [{"id": pid, "text": text} for pid, text, _ in OBVIOUS]})  # a 4-product job
    resp = api.post("/v1/jobs:batch", json={"jobs": entries})
    assert resp.status_code == 202, resp.text
    accepted = resp.json()["jobs"]
    assert [a["status"] for a in accepted] == ["queued"] * 5
    ids = [a["job_id"] for a in accepted]
    assert len(set(ids)) == 5
    # routing by size: the 1-product jobs to the micro-batch queue, the 4-product one per job
    r = redis.Redis.from_url(url, decode_responses=True)
    assert [r.hget(f"categorizer:job:{i}", "queue") for i in ids] == [BATCH_QUEUE] * 4 + [INTERACTIVE_QUEUE]

    resp = api.get("/v1/jobs", params={"ids": ",".join(ids), "wait": 30})
    assert resp.status_code == 200, resp.text
    jobs = resp.json()["jobs"]
    assert [j["job_id"] for j in jobs] == ids
    assert all(j["status"] == "succeeded" for j in jobs), jobs
    for job, (pid, _, category) in zip(jobs[:4], OBVIOUS, strict=True):
        (result,) = job["results"]
        assert (result["id"], result["category"]) == (pid, category)
        assert "needs_review" in result
    assert [(x["id"], x["category"]) for x in jobs[4]["results"]] == [(p, c) for p, _, c in OBVIOUS]
    # the same records as any job: the single GET reads them
    single = api.get(f"/v1/jobs/{ids[0]}").json()
    assert single["results"] == jobs[0]["results"]


def test_multi_read_reports_unknown_and_malformed_ids_per_entry(service):
    _, api, _ = service
    job_id = api.post("/v1/jobs:batch", json={"jobs": [{"text": OBVIOUS[0][1]}]}).json()["jobs"][0]["job_id"]
    unknown = str(uuid.uuid4())
    resp = api.get("/v1/jobs", params={"ids": f"{job_id},{unknown},not-a-uuid", "wait": 30})
    assert resp.status_code == 200
    first, second, third = resp.json()["jobs"]
    assert first["status"] == "succeeded"
    assert second["job_id"] == unknown and second["error"]["type"] == "urn:categorizer:problem:job-not-found"
    assert third["job_id"] == "not-a-uuid" and third["error"]["status"] == 404
    # no wait: answers at once, unfinished jobs carry Retry-After
    resp = api.get("/v1/jobs", params={"ids": job_id})
    assert resp.status_code == 200 and resp.json()["jobs"][0]["status"] == "succeeded"


@pytest.mark.parametrize(
    "params",
    [{}, {"ids": ""}, {"ids": ",".join(str(uuid.uuid4()) for _ in range(51))}, {"ids": "x", "wait": "-1"}],
)
def test_multi_read_bad_parameters_are_400(service, params):
    _, api, _ = service
    resp = api.get("/v1/jobs", params=params)
    assert resp.status_code == 400
    assert resp.json()["type"] == "urn:categorizer:problem:invalid-parameter"


def test_lookup_reads_the_ids_of_a_json_body_like_the_multi_get(service):
    _, api, _ = service
    accepted = api.post("/v1/jobs:batch", json={"jobs": [{"text": t} for _, t, _ in OBVIOUS]}).json()["jobs"]
    ids = [a["job_id"] for a in accepted]
    unknown = str(uuid.uuid4())
    resp = api.post("/v1/jobs:lookup", params={"wait": 30}, json={"ids": [*ids, unknown, "not-a-uuid"]})
    assert resp.status_code == 200, resp.text
    jobs = resp.json()["jobs"]
    assert [j["job_id"] for j in jobs] == [*ids, unknown, "not-a-uuid"]
    assert [j["results"][0]["category"] for j in jobs[:4]] == [c for _, _, c in OBVIOUS]
    assert jobs[4]["error"]["status"] == jobs[5]["error"]["status"] == 404
    assert resp.json()["jobs"][:4] == api.get("/v1/jobs", params={"ids": ",".join(ids)}).json()["jobs"]


@pytest.mark.parametrize(
    "body, pointer, code",
    [
        ({}, "/ids", "required"),
        ({"ids": []}, "/ids", "empty"),
        ({"ids": "a,b"}, "/ids", "type"),
        ({"ids": ["x", 3]}, "/ids/1", "type"),
        ({"ids": ["x"], "wait": 3}, "/wait", "unknown_field"),
        ([], "", "type"),
    ],
)
def test_lookup_bad_bodies_are_422_with_a_pointer(service, body, pointer, code):
    _, api, _ = service
    resp = api.post("/v1/jobs:lookup", json=body)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["type"] == "urn:categorizer:problem:validation-error" and problem["detail"]
    assert (problem["errors"][0]["pointer"], problem["errors"][0]["code"]) == (pointer, code)


def test_lookup_refuses_more_ids_than_the_batch_limit_and_says_the_limit(service):
    _, api, _ = service
    resp = api.post("/v1/jobs:lookup", json={"ids": [str(uuid.uuid4()) for _ in range(51)]})
    assert resp.status_code == 422
    assert resp.json()["max_ids"] == 50 and resp.json()["errors"][0]["code"] == "too_many"
    assert api.post("/v1/jobs:lookup", data=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert api.post("/v1/jobs:lookup", data=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415


def test_client_wait_all_adapts_to_the_server_batch_limit(service):
    server, _, _ = service
    client = Client(server.url)
    jobs = client.submit_many([OBVIOUS[k % 4][1] for k in range(120)], batch_size=40)
    client.wait_all(jobs, timeout=60)  # asks for up to 1,000 ids, then 50 per request (the server's limit)
    assert [j.results()[0]["category"] for j in jobs] == [OBVIOUS[k % 4][2] for k in range(120)]


def test_a_read_of_more_results_than_the_limit_is_refused_and_the_client_splits_it(service, server_factory):
    _, _, url = service
    server = server_factory(url, MAX_LOOKUP_RESULTS=5)
    api = checked_session(server.url, requests.get(server.url + "/openapi.json", timeout=10).json())
    products = [{"id": pid, "text": text} for pid, text, _ in OBVIOUS]
    ids = [j["job_id"] for j in api.post("/v1/jobs:batch", json={"jobs": [{"products": products}] * 3}).json()["jobs"]]
    for resp in (
        api.post("/v1/jobs:lookup", json={"ids": ids}),
        api.get("/v1/jobs", params={"ids": ",".join(ids)}),
    ):
        assert resp.status_code == 422, resp.text
        problem = resp.json()
        assert problem["type"] == "urn:categorizer:problem:too-many-results" and problem["max_results"] == 5
        assert "12 results" in problem["detail"]
    assert api.post("/v1/jobs:lookup", json={"ids": ids[:1]}).status_code == 200  # 4 results
    client = Client(server.url)
    jobs = [client.job(i) for i in ids]
    client.wait_all(jobs, timeout=60)  # 3 ids refused, then 1 per read
    assert all([r["category"] for r in j.results()] == [c for _, _, c in OBVIOUS] for j in jobs)


def test_batch_errors_point_into_the_entry_and_nothing_is_queued(service):
    _, api, url = service
    r = redis.Redis.from_url(url)
    before = r.dbsize()
    body = {
        "jobs": [
            {"text": "fine"},
            {"text": ""},
            {"products": [{"text": "ok"}, {"id": True, "text": 3}]},
            "not an object",
            {"products": []},
            {"id": "no text"},
        ]
    }
    resp = api.post("/v1/jobs:batch", json=body)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["type"] == "urn:categorizer:problem:validation-error"
    pointers = [(e["pointer"], e["code"]) for e in problem["errors"]]
    assert pointers == [
        ("/jobs/1/text", "empty"),
        ("/jobs/2/products/1/text", "type"),
        ("/jobs/2/products/1/id", "type"),
        ("/jobs/3", "type"),
        ("/jobs/4/products", "empty"),
        ("/jobs/5/products", "required"),
    ]
    assert r.dbsize() == before  # all or nothing


@pytest.mark.parametrize(
    "body, status, kind",
    [
        ({"jobs": []}, 422, "validation-error"),
        ({"products": [{"text": "x"}]}, 422, "validation-error"),
        ({"jobs": [{"text": "x"}] * 51}, 422, "too-many-jobs"),
        ([1, 2], 422, "validation-error"),
    ],
)
def test_batch_body_shape_errors(service, body, status, kind):
    _, api, _ = service
    resp = api.post("/v1/jobs:batch", json=body)
    assert resp.status_code == status
    assert resp.json()["type"] == f"urn:categorizer:problem:{kind}"


def test_batch_idempotency_key_replays_the_same_jobs(service):
    _, api, _ = service
    body = {"jobs": [{"text": OBVIOUS[1][1]}, {"text": OBVIOUS[2][1]}]}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = api.post("/v1/jobs:batch", json=body, headers=key)
    again = api.post("/v1/jobs:batch", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert [j["job_id"] for j in again.json()["jobs"]] == [j["job_id"] for j in first.json()["jobs"]]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = api.post("/v1/jobs:batch", json={"jobs": [{"text": "other"}]}, headers=key)
    assert other.status_code == 422 and other.json()["type"].endswith("idempotency-key-reused")


def test_batch_queue_full_is_503_and_writes_nothing(server_factory, redis_factory):
    url = redis_factory().url()
    server = server_factory(url, MAX_QUEUE_DEPTH=1)
    r = redis.Redis.from_url(url)
    r.rpush(INTERACTIVE_QUEUE, "x", "y")
    spec = requests.get(server.url + "/openapi.json", timeout=10).json()
    resp = checked_session(server.url, spec).post("/v1/jobs:batch", json={"jobs": [{"text": "a"}, {"text": "b"}]})
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    assert resp.json()["queue_depth"] == 2
    assert not r.keys("categorizer:job:*")


def test_client_submit_many_and_wait_all(service):
    server, _, _ = service
    client = Client(server.url)
    items = [OBVIOUS[0][1], {"id": "s", "text": OBVIOUS[1][1]}, [OBVIOUS[2][1], OBVIOUS[3][1]]] * 5
    jobs = client.submit_many(items, batch_size=4)  # 4 requests
    assert len(jobs) == 15 and len({j.id for j in jobs}) == 15
    client.wait_all(jobs, timeout=60)
    for job in jobs[::3]:
        assert job.results()[0]["category"] == OBVIOUS[0][2]
    assert [r["category"] for r in jobs[2].results()] == [OBVIOUS[2][2], OBVIOUS[3][2]]
    assert jobs[1].results()[0]["id"] == "s"
    with pytest.raises(ProblemError) as err:
        client.submit_many([{"text": ""}])
    assert err.value.errors[0]["pointer"] == "/jobs/0/text"


@pytest.mark.parametrize("name, queue", [(CATEGORIZE_TASK, INTERACTIVE_QUEUE), (CATEGORIZE_BATCH_TASK, BATCH_QUEUE)])
def test_built_message_is_what_send_task_pushes(redis_factory, name, queue):
    """web.publish.task_message == the message Celery's send_task LPUSHes (but for random ids)."""
    url = redis_factory().url()
    app = make_celery(url)
    r = redis.Redis.from_url(url, decode_responses=True)
    job_id = str(uuid.uuid4())
    app.send_task(name, args=(job_id,), task_id=job_id, queue=queue, ignore_result=True)
    (sent,) = [json.loads(m) for m in r.lrange(queue, 0, -1)]
    built = json.loads(task_message(app, name, job_id, queue))
    for message in (sent, built):
        message["properties"].pop("delivery_tag")
    assert base64.b64decode(built.pop("body")) == base64.b64decode(sent.pop("body"))
    assert built == sent
