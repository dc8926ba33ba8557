"""API keys, ownership (others' ids answer 404) and per-client rate limiting, over real HTTP + Redis."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.integration.samples import OBVIOUS

pytestmark = pytest.mark.integration

PT = "urn:categorizer:problem:"
PRODUCTS = [{"id": pid, "text": text} for pid, text, _ in OBVIOUS[:1]]
ALICE = {"Authorization": "Bearer alice-secret-key"}
BOB = {"X-API-Key": "bob-secret-key"}


@pytest.fixture(scope="module")
def keyed_server(server_factory, redis_url, worker):
    return server_factory(redis_url, API_KEYS="alice:alice-secret-key,bob:bob-secret-key")


def test_a_client_sees_only_its_own_jobs(keyed_server):
    url = keyed_server.url
    resp = requests.post(url + "/v1/jobs", json={"products": PRODUCTS}, headers=ALICE, timeout=10)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    assert uuid.UUID(job_id).version == 4
    mine = requests.get(f"{url}/v1/jobs/{job_id}", params={"wait": 10}, headers=ALICE, timeout=30)
    assert mine.status_code == 200 and mine.json()["status"] == "succeeded"
    # bob gets exactly the answer of an id that does not exist: 404, not 403
    theirs = requests.get(f"{url}/v1/jobs/{job_id}", headers=BOB, timeout=10)
    unknown = requests.get(f"{url}/v1/jobs/{uuid.uuid4()}", headers=BOB, timeout=10)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["type"] == unknown.json()["type"] == PT + "job-not-found"
    # the multi-job reads hide it the same way
    for read in (
        lambda h: requests.get(f"{url}/v1/jobs", params={"ids": job_id}, headers=h, timeout=10),
        lambda h: requests.post(f"{url}/v1/jobs:lookup", json={"ids": [job_id]}, headers=h, timeout=10),
    ):
        assert read(ALICE).json()["jobs"][0]["status"] == "succeeded"
        assert read(BOB).json()["jobs"][0]["error"]["type"] == PT + "job-not-found"
    # no key at all
    anonymous = requests.get(f"{url}/v1/jobs/{job_id}", timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["type"] == PT + "unauthorized"


def test_idempotency_keys_are_per_client(keyed_server):
    url, key = keyed_server.url, {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"products": PRODUCTS}
    a = requests.post(url + "/v1/jobs", json=body, headers={**ALICE, **key}, timeout=10).json()["job_id"]
    b = requests.post(url + "/v1/jobs", json=body, headers={**BOB, **key}, timeout=10).json()["job_id"]
    assert a != b  # bob's request never returns (and so never reveals) alice's job


def test_open_routes_without_a_key(keyed_server):
    for path in ("/healthz", "/openapi.json"):
        assert requests.get(keyed_server.url + path, timeout=10).status_code == 200, path
    assert requests.get(keyed_server.url + "/readyz", timeout=10).status_code in (200, 503)


def test_rate_limit_answers_429_with_retry_after(server_factory, redis_url):
    server = server_factory(
        redis_url,
        API_KEYS=f"carol-{uuid.uuid4().hex[:6]}:carol-key,dave:dave-key",
        RATE_LIMIT_PER_MINUTE=3,
        RATE_LIMIT_BURST=3,
    )
    carol, dave = {"X-API-Key": "carol-key"}, {"X-API-Key": "dave-key"}
    job = f"{server.url}/v1/jobs/{uuid.uuid4()}"
    statuses = [requests.get(job, headers=carol, timeout=10).status_code for _ in range(3)]
    assert statuses == [404] * 3  # within the burst: the request is served (unknown job)
    limited = requests.get(job, headers=carol, timeout=10)
    assert limited.status_code == 429
    assert limited.headers["Content-Type"].startswith("application/problem+json")
    assert limited.json()["type"] == PT + "rate-limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # refused before any work: a POST is not even validated
    assert requests.post(server.url + "/v1/jobs", data=b"{", headers=carol, timeout=10).status_code == 429
    assert requests.get(job, headers=dave, timeout=10).status_code == 404  # buckets are per client
    assert requests.get(server.url + "/healthz", headers=carol, timeout=10).status_code == 200


def test_catalogs_are_private_and_limited_per_client(server_factory, redis_url):
    idle = f"test-idle-catalog-{uuid.uuid4().hex[:8]}"  # no worker consumes it: catalogs stay unfinished
    server = server_factory(
        redis_url, API_KEYS="alice:alice-secret-key,bob:bob-secret-key", CATALOG_QUEUE=idle, MAX_CONCURRENT_CATALOGS=1
    )
    csv_body = b"id,text\n1,USB-C charger for phones\n2,cotton shirt slim fit\n"
    post = {"data": csv_body, "timeout": 30}
    first = requests.post(server.url + "/v1/catalogs", headers={**ALICE, "Content-Type": "text/csv"}, **post)
    assert first.status_code == 202, first.text
    catalog_id = first.json()["catalog_id"]
    assert requests.get(f"{server.url}/v1/catalogs/{catalog_id}", headers=ALICE, timeout=10).status_code == 200
    for path in (f"/v1/catalogs/{catalog_id}", f"/v1/catalogs/{catalog_id}/results"):
        theirs = requests.get(server.url + path, headers=BOB, timeout=10)
        assert theirs.status_code == 404 and theirs.json()["type"] == PT + "catalog-not-found", path
    assert requests.delete(f"{server.url}/v1/catalogs/{catalog_id}", headers=BOB, timeout=10).status_code == 404
    # alice has one unfinished catalog: a second one is refused, bob's is not
    second = requests.post(server.url + "/v1/catalogs", headers={**ALICE, "Content-Type": "text/csv"}, **post)
    assert second.status_code == 429 and second.json()["type"] == PT + "too-many-catalogs"
    assert int(second.headers["Retry-After"]) > 0
    bobs = requests.post(server.url + "/v1/catalogs", headers={**BOB, "Content-Type": "text/csv"}, **post)
    assert bobs.status_code == 202, bobs.text
    # once alice's catalog is gone (deleted), her slot is free again
    assert requests.delete(f"{server.url}/v1/catalogs/{catalog_id}", headers=ALICE, timeout=10).status_code == 200
    third = requests.post(server.url + "/v1/catalogs", headers={**ALICE, "Content-Type": "text/csv"}, **post)
    assert third.status_code == 202, third.text


def test_client_and_cli_send_the_api_key(keyed_server, monkeypatch):
    import subprocess
    import sys

    from tests.paths import REPO
    from web.client import Client, ProblemError

    job = Client(keyed_server.url, api_key="alice-secret-key").submit(PRODUCTS).wait(timeout=30)
    assert job.results()[0]["category"] == OBVIOUS[0][2]
    monkeypatch.delenv("CATEGORIZER_API_KEY", raising=False)
    with pytest.raises(ProblemError) as refused:
        Client(keyed_server.url).submit(PRODUCTS)
    assert refused.value.status == 401
    env = {"CATEGORIZER_API_KEY": "bob-secret-key", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "web.cli", "submit", "--url", keyed_server.url, PRODUCTS[0]["text"]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert OBVIOUS[0][2] in proc.stdout
