"""Catalogs end to end: real redis-server, real Celery workers, real HTTP (docs/catalogs.md).

Each test that needs a particular queue state gets its own private redis-server, so that
queue contents and the inference counter belong to that test alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from tests.integration.conftest import checked_session
from tests.integration.samples import CHARGER, NOVEL
from tests.paths import DATASET
from web.client import Client
from worker.catalog_store import INFERENCES_KEY
from worker.counters import CACHE_HITS_KEY

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BOTH_QUEUES = ("interactive", "catalog")
FAST_REDELIVERY = {"CATEGORIZER_VISIBILITY_TIMEOUT": "3", "CATEGORIZER_RESTORE_INTERVAL": "1"}
LABELS = ["Books", "Clothing & Accessories", "Electronics", "Household"]


# -- data -----------------------------------------------------------------------------------


def dataset_rows(n_unique: int, seed: int) -> list[tuple[str, str]]:
    """A fixed seeded subset of distinct real rows (category, text) of the shared sample."""
    if not DATASET.exists():
        pytest.skip(f"no dataset at {DATASET}")
    csv.field_size_limit(1 << 30)
    with open(DATASET, encoding="utf-8", newline="") as fh:
        rows = [(r[0], r[1]) for r in csv.reader(fh) if len(r) >= 2 and r[1].strip() and len(r[1]) <= 5000]
    rows = list(dict.fromkeys(rows))
    random.Random(seed).shuffle(rows)
    return rows[:n_unique]


def catalog_rows(n_rows: int, n_unique: int, seed: int) -> list[dict]:
    """``n_rows`` rows (id, text, category) repeating ``n_unique`` real rows in a seeded order."""
    base = dataset_rows(n_unique, seed)
    rng = random.Random(seed + 1)
    out = []
    for i in range(n_rows):
        category, text = base[i] if i < len(base) else rng.choice(base)
        out.append({"id": f"sku-{i}", "text": text, "category": category})
    return out


def to_csv(rows: list[dict], columns=("id", "text")) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([r["id"], r["text"]])
    return buf.getvalue().encode("utf-8")


def to_jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows).encode("utf-8")


# -- service --------------------------------------------------------------------------------


class Service:
    def __init__(self, redis_url: str, server, worker=None):
        self.redis_url = redis_url
        self.server = server
        self.worker = worker
        spec = requests.get(server.url + "/openapi.json", timeout=5).json()
        self.api = checked_session(server.url, spec)
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)

    def inferences(self) -> int:
        return int(self.redis.get(INFERENCES_KEY) or 0)

    def submit(self, body: bytes, content_type: str = "text/csv", **params) -> dict:
        resp = self.api.post("/v1/catalogs", data=body, params=params, headers={"Content-Type": content_type})
        assert resp.status_code == 202, resp.text
        assert resp.headers["Location"] == f"/v1/catalogs/{resp.json()['catalog_id']}"
        return resp.json()

    def status(self, catalog_id: str) -> dict:
        resp = self.api.get(f"/v1/catalogs/{catalog_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait(self, catalog_id: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            view = self.status(catalog_id)
            if view["status"] in ("succeeded", "failed", "cancelled"):
                return view
            assert time.monotonic() < deadline, f"catalog not finished: {view}"
            time.sleep(0.1)

    def results(self, catalog_id: str, fmt: str = "csv") -> list[dict]:
        resp = self.api.get(f"/v1/catalogs/{catalog_id}/results", params={"format": fmt}, stream=True)
        assert resp.status_code == 200, resp.text
        text = resp.content.decode("utf-8")
        if fmt == "jsonl":
            return [json.loads(line) for line in text.splitlines()]
        return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def svc(redis_factory, worker_factory, server_factory) -> Service:
    url = redis_factory(appendonly=False).url()
    worker = worker_factory(url, queues=BOTH_QUEUES)
    return Service(url, server_factory(url, CATALOG_CHUNK_SIZE=128, CATALOG_MAX_TEXT_LENGTH=5000), worker)


def assert_complete_in_order(results: list[dict], rows: list[dict]) -> None:
    assert [int(r["row"]) for r in results] == list(range(1, len(rows) + 1))
    assert [r["id"] for r in results] == [r["id"] for r in rows]


# -- tests ----------------------------------------------------------------------------------


def test_csv_catalog_of_real_rows_is_complete_and_in_order(svc):
    rows = catalog_rows(3000, 700, seed=1)
    accepted = svc.submit(to_csv(rows))
    assert accepted["total"] == 3000 and accepted["ingested"] is True
    view = svc.wait(accepted["catalog_id"])
    assert view["status"] == "succeeded", view
    assert (view["total"], view["done"], view["failed_rows"]) == (3000, 3000, 0)
    assert view["chunks"] == view["chunks_done"] == 24
    assert view["model_version"] and view["rows_per_s"] > 0 and view["eta_s"] == 0
    assert view["model_versions"] == {view["model_version"]: 3000}
    # identical texts cost one inference: at most one per distinct text
    assert view["inferences"] <= 700
    results = svc.results(accepted["catalog_id"])
    assert_complete_in_order(results, rows)
    columns = list(results[0])
    assert columns[:4] == ["row", "id", "category", "confidence"]
    assert columns[-3:] == ["model_version", "error", "needs_review"]
    assert sorted(columns[4:-3]) == [f"p_{c}" for c in LABELS]
    # needs_review follows REVIEW_THRESHOLD (0.9 by default), as for interactive results
    assert {r["needs_review"] for r in results} == {"true", "false"}
    assert all((r["needs_review"] == "true") == (float(r["confidence"]) < 0.9) for r in results)
    by_text = {}
    for r, src in zip(results, rows, strict=True):
        assert r["category"] in LABELS and not r["error"]
        assert abs(sum(float(r[f"p_{c}"]) for c in LABELS) - 1) < 1e-3
        assert float(r["confidence"]) == max(float(r[f"p_{c}"]) for c in LABELS)
        assert by_text.setdefault(src["text"], r["category"]) == r["category"]
    agree = sum(r["category"] == src["category"] for r, src in zip(results, rows, strict=True)) / len(rows)
    assert agree > 0.8  # the real labels: a sanity check of row alignment, not a model test


def test_jsonl_catalog_and_column_options(svc):
    rows = catalog_rows(300, 300, seed=2)
    # JSON Lines, sniffed (no Content-Type hint)
    accepted = svc.submit(to_jsonl(rows), content_type="application/octet-stream")
    assert svc.wait(accepted["catalog_id"])["status"] == "succeeded"
    results = svc.results(accepted["catalog_id"], fmt="jsonl")
    assert_complete_in_order(results, rows)
    assert set(results[0]["probabilities"]) == set(LABELS) and results[0]["error"] is None
    assert all(r["needs_review"] is (r["confidence"] < 0.9) for r in results)

    # CSV with other column names, title + description joined
    name, desc = NOVEL[1].split(":", 1)
    body = (
        f'sku;ignored,name,details\nn1,x,"{name}","{desc}"\nc1,y,"{CHARGER[1][:30]}","{CHARGER[1][30:]}"\n'
    ).encode()
    accepted = svc.submit(body, title_column="name", description_column="details", id_column="sku;ignored")
    assert svc.wait(accepted["catalog_id"])["status"] == "succeeded"
    got = [(r["id"], r["category"]) for r in svc.results(accepted["catalog_id"])]
    assert got == [("n1", "Books"), ("c1", "Electronics")]

    # a text column with another name
    accepted = svc.submit(b"product_text\n" + CHARGER[1].encode() + b"\n", text_column="product_text")
    assert svc.wait(accepted["catalog_id"])["status"] == "succeeded"
    assert [r["category"] for r in svc.results(accepted["catalog_id"], fmt="jsonl")] == ["Electronics"]


def test_bad_rows_are_reported_per_row_and_never_fail_the_catalog(svc):
    good = catalog_rows(200, 200, seed=3)
    lines = [b"id,text"]
    expected_errors = {}
    for i, r in enumerate(good):
        lines.append(f'{r["id"]},"{r["text"].replace(chr(34), chr(34) * 2)}"'.encode())
        if i == 10:
            lines.append(b"bad-empty,")
            expected_errors[len(lines) - 1] = "empty_text"
        if i == 50:
            lines.append(b"bad-long," + b"word " * 2000)
            expected_errors[len(lines) - 1] = "too_long"
        if i == 90:
            lines.append(b'bad-quote,"unbalanced"quote here')
            expected_errors[len(lines) - 1] = "malformed_csv"
        if i == 130:
            lines.append(b"bad-utf8,Caf\xe9 au lait mug \xff")
            expected_errors[len(lines) - 1] = "invalid_encoding"
    accepted = svc.submit(b"\n".join(lines) + b"\n")
    view = svc.wait(accepted["catalog_id"])
    assert view["status"] == "succeeded"
    assert (view["total"], view["done"], view["failed_rows"]) == (204, 204, 4)
    results = svc.results(accepted["catalog_id"])
    assert [int(r["row"]) for r in results] == list(range(1, 205))
    errors = {int(r["row"]): r["error"].split(":")[0] for r in results if r["error"]}
    assert errors == expected_errors
    for r in results:
        if r["error"]:
            assert r["category"] == "" and r["p_Books"] == "" and r["needs_review"] == ""
        else:
            assert r["category"] in LABELS

    # JSON Lines: invalid JSON on one line, a line without text
    body = to_jsonl(good[:3]) + b"{oops\n" + b'{"id": "no-text"}\n' + to_jsonl(good[3:5])
    accepted = svc.submit(body, content_type="application/x-ndjson")
    view = svc.wait(accepted["catalog_id"])
    assert (view["status"], view["done"], view["failed_rows"]) == ("succeeded", 7, 2)
    results = svc.results(accepted["catalog_id"], fmt="jsonl")
    assert [(r["row"], (r["error"] or "").split(":")[0]) for r in results] == [
        (1, ""),
        (2, ""),
        (3, ""),
        (4, "invalid_json"),
        (5, "missing_text"),
        (6, ""),
        (7, ""),
    ]
    assert results[4]["id"] == "no-text" and results[4]["category"] is None
    assert results[4]["needs_review"] is None and isinstance(results[0]["needs_review"], bool)


def test_files_that_are_not_catalogs_are_refused_up_front(svc):
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(4096)
    resp = svc.api.post("/v1/catalogs", data=png, headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 415
    problem = resp.json()
    assert problem["type"] == "urn:categorizer:problem:not-a-catalog" and "PNG" in problem["detail"]

    resp = svc.api.post("/v1/catalogs", data=b"name,price\nshirt,3\n", headers={"Content-Type": "text/csv"})
    assert resp.status_code == 422
    assert resp.json()["type"] == "urn:categorizer:problem:missing-column"
    assert "'text'" in resp.json()["detail"] and "'name'" in resp.json()["detail"]

    resp = svc.api.post("/v1/catalogs", data=b"text\nhi\n", params={"text_column": "body"})
    assert resp.status_code == 422 and "'body'" in resp.json()["detail"]

    resp = svc.api.post("/v1/catalogs", data=b"id,text\n", headers={"Content-Type": "text/csv"})
    assert resp.status_code == 422 and resp.json()["type"].endswith("empty-catalog")

    resp = svc.api.post("/v1/catalogs", data=b"text\nhi\n", params={"format": "xml"})
    assert resp.status_code == 400

    missing = "00000000-0000-4000-8000-000000000000"
    assert svc.api.get(f"/v1/catalogs/{missing}").status_code == 404
    assert svc.api.get(f"/v1/catalogs/{missing}/results").status_code == 404
    assert svc.api.get("/v1/catalogs/not-a-uuid").status_code == 404


def test_second_upload_of_the_same_file_costs_no_inference(svc):
    rows = catalog_rows(1500, 400, seed=4)
    body = to_csv(rows)
    before = svc.inferences()
    first = svc.wait(svc.submit(body)["catalog_id"])
    ran = svc.inferences() - before
    assert first["status"] == "succeeded" and ran == first["inferences"] > 0
    assert ran <= 400  # one inference per distinct text at most

    before, hits_before = svc.inferences(), int(svc.redis.get(CACHE_HITS_KEY) or 0)
    accepted = svc.submit(body)
    second = svc.wait(accepted["catalog_id"])
    assert svc.inferences() == before  # 0 inferences the second time
    assert second["inferences"] == 0
    assert second["cached_rows"] == second["total"] == 1500
    # the cache metric counts the rows answered from the cache (categorizer_cache_hits_total)
    assert int(svc.redis.get(CACHE_HITS_KEY) or 0) - hits_before == 1500
    # the first upload's model calls went through worker.model.categorize (hooks, batch log line)
    log = svc.worker.log_path.read_text()
    assert f"batch job_id=catalog:{first['catalog_id']}:0 " in log
    first_results = svc.results(first["catalog_id"])
    second_results = svc.results(accepted["catalog_id"])
    assert [(r["id"], r["category"], r["confidence"]) for r in first_results] == [
        (r["id"], r["category"], r["confidence"]) for r in second_results
    ]


def test_results_wait_for_the_catalog_and_delete_purges(svc):
    rows = catalog_rows(50, 50, seed=5)
    accepted = svc.submit(to_csv(rows))
    svc.wait(accepted["catalog_id"])
    cid = accepted["catalog_id"]
    resp = svc.api.delete(f"/v1/catalogs/{cid}")
    assert resp.status_code == 200 and resp.json()["cancelled"] is False
    assert svc.api.get(f"/v1/catalogs/{cid}").status_code == 404
    assert svc.api.get(f"/v1/catalogs/{cid}/results").status_code == 404
    assert svc.api.delete(f"/v1/catalogs/{cid}").status_code == 404
    assert not list(svc.redis.scan_iter(f"categorizer:catalog:{cid}*"))


def test_cancel_skips_pending_chunks(redis_factory, worker_factory, server_factory):
    """Cancelled while queued (no worker yet): its queued chunks are skipped, its pending chunks
    (beyond the window) are never sent, its data is gone."""
    url = redis_factory(appendonly=False).url()
    svc = Service(url, server_factory(url, CATALOG_CHUNK_SIZE=64))
    rows = catalog_rows(640, 640, seed=6)
    cancelled = svc.submit(to_csv(rows))
    kept = svc.submit(to_csv(rows[:64]))
    assert svc.status(cancelled["catalog_id"])["status"] == "queued"
    assert svc.redis.llen("catalog") == 4 + 1  # CATALOG_WINDOW (4) of the 10 chunks, then the kept one
    assert svc.redis.llen(f"categorizer:catalog:{cancelled['catalog_id']}:pending") == 6
    resp = svc.api.delete(f"/v1/catalogs/{cancelled['catalog_id']}")
    assert resp.status_code == 200 and resp.json()["cancelled"] is True
    assert svc.api.get(f"/v1/catalogs/{cancelled['catalog_id']}").status_code == 404

    worker_factory(url, queues=BOTH_QUEUES)
    assert svc.wait(kept["catalog_id"])["status"] == "succeeded"
    deadline = time.monotonic() + 30
    while svc.redis.llen("catalog") or svc.redis.hlen("unacked"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert svc.inferences() == 64  # only the kept catalog's rows ran through the model
    assert not list(svc.redis.scan_iter(f"categorizer:catalog:{cancelled['catalog_id']}*"))


@pytest.mark.parametrize("queues", [BOTH_QUEUES, ("interactive", "interactive-batch", "catalog")], ids=["two", "three"])
def test_interactive_job_completes_while_a_large_catalog_runs(redis_factory, worker_factory, server_factory, queues):
    """Fairness: with 200 catalog chunks queued and running, an interactive job waits for a chunk or two.

    Also with the micro-batch queue on the same node: its prefetch step (worker.batch_prefetch)
    must not apply there, or the node would reserve hundreds of chunks.
    """
    url = redis_factory(appendonly=False).url()
    svc = Service(url, server_factory(url, CATALOG_CHUNK_SIZE=32, CATALOG_WINDOW=0))  # 0: all 200 chunks queued
    rows = catalog_rows(6400, 1200, seed=7)
    big = svc.submit(to_csv(rows))
    assert svc.redis.llen("catalog") == 200
    worker = worker_factory(url, queues=queues)  # one process, consuming the queues in turn
    deadline = time.monotonic() + 60
    reserved = 0
    while svc.status(big["catalog_id"])["chunks_done"] < 1:
        assert time.monotonic() < deadline
        reserved = max(reserved, svc.redis.hlen("unacked"))
        time.sleep(0.01)
    for _ in range(20):
        reserved = max(reserved, svc.redis.hlen("unacked"))
        time.sleep(0.01)
    assert reserved <= 2, f"the worker reserved {reserved} messages"  # prefetch 1 (+ one being acknowledged)
    if "interactive-batch" in queues:
        assert "microbatch_prefetch_skipped" in worker.log_path.read_text()
    job = Client(svc.server.url).submit([{"id": "n", "text": NOVEL[1]}])
    job.wait(timeout=60)
    view = svc.status(big["catalog_id"])
    assert [(r["id"], r["category"]) for r in job.results()] == [("n", "Books")]
    assert view["status"] == "running" and view["chunks_done"] < view["chunks"], view
    assert svc.wait(big["catalog_id"])["done"] == 6400


def test_a_small_catalog_is_not_queued_behind_a_big_one(redis_factory, worker_factory, server_factory):
    """Per-catalog window: a big catalog keeps CATALOG_WINDOW chunks queued, so a small catalog
    submitted after it is served within a few chunks, not after the whole big one."""
    url = redis_factory(appendonly=False).url()
    svc = Service(url, server_factory(url, CATALOG_CHUNK_SIZE=32, CATALOG_WINDOW=4))
    # test-only delay (worker.faults): the big catalog's chunks cannot all finish during the next upload
    worker_factory(url, queues=("catalog",), concurrency=1, env={"CATEGORIZER_TEST_TASK_DELAY": "0.05"})
    big_rows = catalog_rows(60 * 32, 60 * 32, seed=11)
    big = svc.submit(to_csv(big_rows))
    small = svc.submit(to_csv(catalog_rows(40, 40, seed=12)))
    assert big["chunks"] == 60 and small["chunks"] == 2
    assert svc.redis.llen("catalog") <= 4 + 2  # never more than the window of each catalog
    view = svc.wait(small["catalog_id"])
    big_view = svc.status(big["catalog_id"])
    assert view["status"] == "succeeded" and view["done"] == 40
    assert big_view["status"] == "running" and big_view["done"] < big_view["total"], big_view
    final = svc.wait(big["catalog_id"], timeout=120)
    assert (final["status"], final["done"], final["chunks_done"]) == ("succeeded", 60 * 32, 60)
    assert_complete_in_order(svc.results(big["catalog_id"]), big_rows)
    assert svc.redis.llen("catalog") == 0
    assert not svc.redis.exists(f"categorizer:catalog:{big['catalog_id']}:pending")
    assert not svc.redis.hlen(f"categorizer:catalog:{big['catalog_id']}:handoff")
    assert svc.redis.hget(f"categorizer:catalog:{big['catalog_id']}", "inflight") == "0"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_every_row_exactly_once_after_a_worker_is_killed(redis_factory, worker_factory, server_factory):
    url = redis_factory(appendonly=False).url()
    svc = Service(url, server_factory(url, CATALOG_CHUNK_SIZE=64))
    first = worker_factory(url, queues=BOTH_QUEUES, env=FAST_REDELIVERY)
    rows = catalog_rows(3000, 3000, seed=8)
    accepted = svc.submit(to_csv(rows))
    cid = accepted["catalog_id"]
    deadline = time.monotonic() + 60
    while svc.status(cid)["chunks_done"] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for pid in _children(first.process.pid):  # freeze the pool mid-catalog, holding a reserved chunk
        os.kill(pid, signal.SIGSTOP)
    while svc.redis.hlen("unacked") == 0:
        assert time.monotonic() < deadline, "no reserved chunk"
        time.sleep(0.02)
    first.kill()  # SIGKILL: no acknowledgement, no requeue on shutdown
    killed_at = svc.status(cid)
    assert killed_at["status"] == "running" and killed_at["done"] < 3000

    worker_factory(url, queues=BOTH_QUEUES, env=FAST_REDELIVERY)
    view = svc.wait(cid, timeout=120)
    assert (view["status"], view["total"], view["done"], view["failed_rows"]) == ("succeeded", 3000, 3000, 0)
    results = svc.results(cid)
    assert_complete_in_order(results, rows)  # every row once, none twice, in order
    assert len({r["row"] for r in results}) == 3000


def test_cli_submit_catalog(svc, tmp_path):
    rows = catalog_rows(400, 400, seed=9)
    src = tmp_path / "products.csv"
    src.write_bytes(to_csv(rows, columns=("sku", "description_text")))
    out = tmp_path / "categorized.csv"
    cmd = [sys.executable, "-m", "web.cli", "submit-catalog", str(src), "-o", str(out), "--url", svc.server.url]
    proc = subprocess.run(
        cmd + ["--text-column", "description_text", "--id-column", "sku", "--poll", "0.2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "row/s" in proc.stderr or "row]" in proc.stderr  # the progress bar
    with open(out, newline="", encoding="utf-8") as fh:
        results = list(csv.DictReader(fh))
    assert_complete_in_order(results, rows)

    out_jsonl = tmp_path / "categorized.jsonl"
    cmd_jsonl = cmd[:5] + ["-o", str(out_jsonl), "--url", svc.server.url, "--text-column", "description_text", "-q"]
    assert subprocess.run(cmd_jsonl, capture_output=True, timeout=120).returncode == 0
    assert len(out_jsonl.read_text().splitlines()) == 400

    bad = tmp_path / "photo.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(1000))
    proc = subprocess.run(
        cmd[:4] + [str(bad), "-o", str(tmp_path / "x.csv"), "--url", svc.server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "refused" in proc.stderr and "not a CSV or JSON Lines" in proc.stderr
    assert not (tmp_path / "x.csv").exists()


def test_a_chunk_over_the_time_limit_is_retried_then_failed_and_the_catalog_finishes(
    redis_factory, worker_factory, server_factory
):
    """Every chunk exceeds a tiny soft limit (test-only delay): retried once, then its rows fail."""
    url = redis_factory(appendonly=False).url()
    svc = Service(url, server_factory(url, CATALOG_CHUNK_SIZE=8))
    env = {
        "CATEGORIZER_TASK_SOFT_TIME_LIMIT": "0.5",
        "CATEGORIZER_TASK_TIME_LIMIT": "10",
        "CATEGORIZER_TEST_TASK_DELAY": "2",  # test-only fault injection (worker.faults)
        "CATEGORIZER_CATALOG_TIME_LIMIT_RETRIES": "1",
    }
    worker = worker_factory(url, queues=BOTH_QUEUES, env=env)
    rows = catalog_rows(12, 12, seed=10)
    accepted = svc.submit(to_csv(rows))
    view = svc.wait(accepted["catalog_id"], timeout=60)
    assert (view["status"], view["total"], view["done"], view["failed_rows"]) == ("succeeded", 12, 12, 12)
    results = svc.results(accepted["catalog_id"])
    assert_complete_in_order(results, rows)
    assert all(r["error"].startswith("time_limit: ") and "2 attempts" in r["error"] for r in results)
    assert all(r["category"] == "" and r["needs_review"] == "" for r in results)
    log = worker.log_path.read_text()
    assert log.count("catalog_chunk_time_limit") == 2  # each of the 2 chunks retried once


def test_hostile_rows_are_row_errors_end_to_end(svc):
    """Lone surrogate escapes, undecodable ids of short rows, a bad first JSON Lines line: each a
    row error (never a 500, never a refusal), and the catalog succeeds with every row."""
    body = b'{"id": "s", "text": "\\ud800 shirt"}\n{"id": "\\udfff", "text": "' + CHARGER[1].encode() + b'"}\n'
    view = svc.wait(svc.submit(body, content_type="application/x-ndjson")["catalog_id"])
    assert (view["status"], view["done"], view["failed_rows"]) == ("succeeded", 2, 1)
    results = svc.results(view["catalog_id"], fmt="jsonl")
    assert results[0]["error"].startswith("invalid_encoding") and results[1]["id"] == "\ufffd"
    assert results[1]["category"] == "Electronics"

    body = b"id,text\n1," + CHARGER[1].encode() + b"\nbad\xff\n"
    view = svc.wait(svc.submit(body)["catalog_id"])
    assert (view["status"], view["done"], view["failed_rows"]) == ("succeeded", 2, 1)
    assert [(r["id"], r["error"].split(":")[0]) for r in svc.results(view["catalog_id"])] == [
        ("1", ""),
        ("bad\ufffd", "missing_field"),
    ]

    body = b'{"text": "a",}\n{"id": "2", "text": "' + CHARGER[1].encode() + b'"}\n'
    view = svc.wait(svc.submit(body, content_type="application/octet-stream", format="jsonl")["catalog_id"])
    assert (view["status"], view["done"], view["failed_rows"]) == ("succeeded", 2, 1)
    results = svc.results(view["catalog_id"], fmt="jsonl")
    assert results[0]["error"].startswith("invalid_json") and results[1]["category"] == "Electronics"


def test_a_download_whose_results_disappear_is_broken_off_not_complete(svc):
    rows = catalog_rows(300, 300, seed=13)  # 3 chunks of 128
    cid = svc.submit(to_csv(rows))["catalog_id"]
    assert svc.wait(cid)["status"] == "succeeded"
    svc.redis.hdel(f"categorizer:catalog:{cid}:out", "1")  # as a DELETE or expiry mid-download would
    resp = requests.get(f"{svc.server.url}/v1/catalogs/{cid}/results", stream=True, timeout=30)
    assert resp.status_code == 200
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        b"".join(resp.iter_content(1 << 16))
