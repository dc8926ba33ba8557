"""Model refresh without downtime (issue 6): publish under traffic, the quality gate, corrupt bundles, rollback.

Real Redis (a private redis-server), two real Celery workers (prefork, one pool process each)
watching a temporary model directory (a copy of the shipped bundle), the real Flask app over
HTTP, and tiny bundles trained here through ``categorizer train`` (each trained once).
The tests run in file order and share the model directory: publish -> corrupt -> rollback.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.integration.conftest import checked_session
from tests.integration.samples import CHARGER, OBVIOUS
from tests.paths import DATASET, REPO
from training.bundle import read_current, set_current
from web.client import Client

pytestmark = [
    pytest.mark.integration,
    pytest.mark.training,
    pytest.mark.slow,
    pytest.mark.skipif(not DATASET.exists(), reason="shared dataset not present"),
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs the 'train' extra"),
]

CHECK_INTERVAL = "0.2"
TINY = ("--max-rows", "600", "--epochs", "1", "--seq-len", "32", "--vocab-size", "3000", "--quiet")
BATCH_LINE = re.compile(r"batch job_id=(\S+) .*model_version=(\S+) pid=(\d+)")


def cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "web.cli", *args], cwd=REPO, capture_output=True, text=True, check=check, timeout=600
    )


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def models(tmp_path_factory, models_dir):
    """A private model dir holding a copy of the shipped bundle, current."""
    shipped = read_current(models_dir)
    path = tmp_path_factory.mktemp("refresh") / "models"
    path.mkdir()
    shutil.copytree(models_dir / shipped, path / shipped)
    set_current(path, shipped)
    return path, shipped


@pytest.fixture(scope="module")
def gated_run(models):
    """``train --publish`` of a tiny bundle against the (much better) shipped one: the gate refuses it."""
    path, _ = models
    return cli("train", "--data", str(DATASET), "--models", str(path), "--version", "v-gated", "--publish", *TINY)


@pytest.fixture(scope="module")
def cluster(models, redis_factory, worker_factory, server_factory):
    path, _ = models
    url = redis_factory(appendonly=False).url()
    env = {"CATEGORIZER_MODEL_DIR": str(path), "CATEGORIZER_MODEL_CHECK_INTERVAL": CHECK_INTERVAL}
    workers = [worker_factory(url, env=env) for _ in range(2)]
    server = server_factory(url, MODEL_DIR=str(path))
    spec = requests.get(server.url + "/openapi.json", timeout=5).json()
    return workers, server, checked_session(server.url, spec)


def model_check(api) -> dict:
    resp = api.get("/readyz")
    assert resp.status_code == 200, resp.text
    return resp.json()["checks"]


def processes(api) -> dict[str, list[dict]]:
    """hostname -> the model state of its pool processes (from the heartbeats)."""
    return {w["hostname"]: w.get("model_processes") or [] for w in model_check(api)["workers"]["workers"]}


def all_serve(api, version: str, n_workers: int = 2) -> bool:
    procs = processes(api)
    return len(procs) == n_workers and all(p and all(x["model_version"] == version for x in p) for p in procs.values())


def test_a_bundle_failing_the_quality_gate_is_kept_but_not_published(models, gated_run, cluster):
    path, shipped = models
    _, _, api = cluster
    assert gated_run.returncode == 1, gated_run.stderr[-2000:]
    assert "quality gate failed" in gated_run.stderr and f"regresses from current {shipped}" in gated_run.stderr
    assert json.loads(gated_run.stdout[gated_run.stdout.index("{") :])["published"] is False
    assert read_current(path) == shipped
    assert (path / "v-gated" / "manifest.json").is_file()
    listing = api.get("/v1/models").json()
    assert listing["current"] == shipped
    assert {m["version"]: m["current"] for m in listing["models"]} == {shipped: True, "v-gated": False}
    assert api.get("/v1/model").json()["version"] == shipped


def test_publish_while_jobs_stream_switches_every_worker_without_failures_or_restarts(models, cluster, gated_run):
    path, shipped = models
    workers, server, api = cluster
    wait_for(lambda: all_serve(api, shipped), what=f"both workers on {shipped}")
    pids_before = {h: [p["pid"] for p in ps] for h, ps in processes(api).items()}

    client = Client(server.url)
    jobs: list[dict] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def stream() -> None:
        try:
            while not stop.is_set():
                job = client.submit([{"id": k, "text": t} for k, t, _ in OBVIOUS]).wait(60)
                jobs.append(job.data)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(jobs) >= 5 or errors, what="jobs on the old model")
        # train and publish through the gate (a tiny model: the regression allowance is opened)
        proc = cli(
            "train", "--data", str(DATASET), "--models", str(path), "--version", "v-new", "--publish",
            "--max-regression", "1", *TINY,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert read_current(path) == "v-new"
        wait_for(lambda: sum(j["model_version"] == "v-new" for j in jobs) >= 5 or errors, what="jobs on v-new")
        wait_for(lambda: all_serve(api, "v-new"), what="both workers on v-new")
    finally:
        stop.set()
        thread.join(90)
    assert not errors, errors
    assert jobs and all(j["status"] == "succeeded" for j in jobs)
    for job in jobs:
        assert job["model_version"] in (shipped, "v-new")
        assert {r["model_version"] for r in job["results"]} == {job["model_version"]}
    assert jobs[0]["model_version"] == shipped and jobs[-1]["model_version"] == "v-new"

    # per worker (attributed through its batch log lines): old results, then new ones, never back
    order = {j["job_id"]: i for i, j in enumerate(jobs)}
    attributed = 0
    for worker in workers:
        seen = sorted((order[m[1]], m[2]) for m in BATCH_LINE.finditer(worker.log_path.read_text()) if m[1] in order)
        versions = [v for _, v in seen]
        attributed += len(versions)
        if "v-new" in versions:
            first_new = versions.index("v-new")
            assert set(versions[:first_new]) <= {shipped} and set(versions[first_new:]) == {"v-new"}, versions
        log = worker.log_path.read_text()
        assert f"model_reload from={shipped} to=v-new" in log
    assert attributed >= len(jobs)  # every job's batch was found in one worker's log

    # no worker (nor its pool process) restarted
    assert {h: [p["pid"] for p in ps] for h, ps in processes(api).items()} == pids_before
    assert all(w.process.proc.poll() is None for w in workers)
    current = api.get("/v1/model").json()
    assert current["version"] == "v-new" and current["current"] is True
    assert len(current["data"]["sha256"]) == 64 and 0 <= current["test"]["accuracy"] <= 1 and current["trained_at"]


@pytest.mark.parametrize("damage", ["missing tokenizer.json", "truncated model.keras"])
def test_a_corrupt_bundle_is_refused_and_workers_keep_serving_the_old_one(models, cluster, damage):
    path, _ = models
    workers, server, api = cluster
    serving = read_current(path)
    wait_for(lambda: all_serve(api, serving), what=f"both workers on {serving}")
    broken = "v-broken-" + damage.split()[0]
    shutil.copytree(path / serving, path / broken)
    if damage.startswith("missing"):
        (path / broken / "tokenizer.json").unlink()
    else:
        keras_file = path / broken / "model.keras"
        keras_file.write_bytes(keras_file.read_bytes()[: keras_file.stat().st_size // 2])
    # set_current refuses such a bundle; force the pointer as a careless hand (or a bad copy) would
    tmp = path / ".current-forced"
    tmp.write_text(broken + "\n")
    os.replace(tmp, path / "current")

    def refused() -> dict | None:
        model = model_check(api)["model"]  # /readyz still answers 200: the workers still serve
        ok = model["status"] == "degraded" and len(model["errors"]) == 2
        return model if ok and all(e["error_version"] == broken for e in model["errors"]) else None

    model = wait_for(refused, what="both workers to refuse the broken bundle")
    assert model["versions"] == [serving] and model["current"] == [broken]
    reason = "file tokenizer.json is missing" if damage.startswith("missing") else "checksum mismatch for model.keras"
    assert all(reason in e["model_error"] for e in model["errors"]), model["errors"]
    for worker in workers:
        assert "model_load_failed pid=" in worker.log_path.read_text()
    # jobs keep succeeding with the old bundle
    for _ in range(4):
        job = Client(server.url).submit([CHARGER[1]]).wait(30)
        assert job.status == "succeeded" and job.data["model_version"] == serving
    # back to the good bundle: the error clears
    proc = cli("models", "--models", str(path), "rollback", serving)
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: model_check(api)["model"]["status"] == "ok", what="the error to clear")
    shutil.rmtree(path / broken)


def test_rollback_restores_the_previous_version_in_every_worker(models, cluster):
    path, shipped = models
    _, server, api = cluster
    assert read_current(path) == "v-new"  # published by the test above
    proc = cli("models", "--models", str(path), "rollback")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"previous": "v-new", "current": shipped}
    assert read_current(path) == shipped
    wait_for(lambda: all_serve(api, shipped), what=f"both workers back on {shipped}")
    for _ in range(4):
        job = Client(server.url).submit([CHARGER[1]]).wait(30)
        assert job.data["model_version"] == shipped
        assert job.results()[0]["category"] == CHARGER[2]
    assert api.get("/v1/model").json()["version"] == shipped
    # nothing was published before the shipped bundle here: a further rollback has no target
    again = cli("models", "--models", str(path), "rollback")
    assert again.returncode == 1 and "no earlier published version" in again.stderr
    listing = cli("models", "--models", str(path), "list")
    assert re.search(rf"^\* {re.escape(shipped)} ", listing.stdout, re.M)
    events = json.loads((path / "history.json").read_text())["events"]
    assert [(e["version"], e["action"]) for e in events][-2:] == [("v-new", "rollback"), (shipped, "rollback")]


def test_a_catalog_that_spans_a_refresh_reports_rows_per_version(
    models, gated_run, redis_factory, worker_factory, server_factory
):
    """One worker on the catalog queue, one chunk of 4 rows in flight at a time (so chunks run in
    order): a bundle published mid-catalog takes over between chunks, every row keeps the version
    that categorized it, and the catalog view counts rows per version."""
    path, shipped = models
    assert read_current(path) == shipped and (path / "v-gated" / "manifest.json").is_file()
    url = redis_factory(appendonly=False).url()
    env = {"CATEGORIZER_MODEL_DIR": str(path), "CATEGORIZER_MODEL_CHECK_INTERVAL": CHECK_INTERVAL}
    worker_factory(url, queues=("interactive", "catalog"), env=env)
    server = server_factory(url, MODEL_DIR=str(path), CATALOG_CHUNK_SIZE=4, CATALOG_WINDOW=1)
    csv.field_size_limit(1 << 30)
    with open(DATASET, encoding="utf-8", newline="") as fh:
        texts = list(dict.fromkeys(r[1] for r in csv.reader(fh) if len(r) >= 2 and 0 < len(r[1]) <= 2000))[:6000]
    body = io.StringIO()
    writer = csv.writer(body, lineterminator="\n")
    writer.writerow(["id", "text"])
    writer.writerows([f"sku-{i}", t] for i, t in enumerate(texts))
    resp = requests.post(
        server.url + "/v1/catalogs", data=body.getvalue().encode(), headers={"Content-Type": "text/csv"}, timeout=60
    )
    assert resp.status_code == 202, resp.text
    status_url = server.url + resp.headers["Location"]

    def view() -> dict:
        return requests.get(status_url, timeout=10).json()

    wait_for(lambda: view()["done"] >= 200, what="the catalog to be under way")
    set_current(path, "v-gated")  # published by hand, mid-catalog
    try:
        final = wait_for(lambda: (v := view())["status"] in ("succeeded", "failed") and v, timeout=120, what="done")
    finally:
        set_current(path, shipped)
    assert final["status"] == "succeeded" and final["done"] == len(texts) and final["failed_rows"] == 0
    assert final["model_version"] == "v-gated"  # the last chunk's
    rows = list(csv.DictReader(io.StringIO(requests.get(status_url + "/results", timeout=60).text)))
    versions = [r["model_version"] for r in rows]
    assert [r["id"] for r in rows] == [f"sku-{i}" for i in range(len(texts))]
    assert final["model_versions"] == {shipped: versions.count(shipped), "v-gated": versions.count("v-gated")}
    assert final["model_versions"][shipped] >= 200 and final["model_versions"]["v-gated"] > 0
    # one switch, between two chunks
    switch = versions.index("v-gated")
    assert set(versions[:switch]) == {shipped} and set(versions[switch:]) == {"v-gated"} and switch % 4 == 0
