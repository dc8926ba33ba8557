"""Catalog throughput and web-process memory. Prints one JSON document.

1. Throughput: a ``--rows`` (50,000) row catalog built from the real sample (every row of
   ``ecommerce_sample.csv`` in a seeded random order, repeated until there are enough rows;
   duplicates included, as in real catalogs), uploaded as CSV through the full service
   (redis-server, 1 Celery worker process consuming ``interactive,catalog``, gunicorn), from
   the POST until the catalog has succeeded, with a cold cache. Reports rows/s over all rows and
   over the unique texts only, against in-process ``Bundle.predict`` on the same unique texts
   in batches of the chunk size, in the same run (ratio; goal >= 0.8). Then the same file again
   (warm cache: 0 inferences).
2. Memory: peak RSS of the gunicorn worker process while it ingests generated catalogs of
   ``--ingest-mb`` sizes (real rows repeated, streamed from a generator with chunked transfer
   encoding, never stored on disk). The catalogs are deleted (cancelled) right after the upload.

    python benchmarks/catalog.py [--rows 50000] [--ingest-mb 100,500]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import DEFAULT_DATA, machine  # noqa: E402


def sample_rows() -> list[str]:
    csv.field_size_limit(1 << 30)
    with open(DEFAULT_DATA, encoding="utf-8", newline="") as fh:
        return [row[1] for row in csv.reader(fh) if len(row) >= 2]


def build_catalog(texts: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        block = texts[:]
        rng.shuffle(block)
        out.extend(block)
    return out[:n]


def to_csv(texts: list[str], start: int = 0) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if start == 0:
        w.writerow(["id", "text"])
    for i, t in enumerate(texts, start):
        w.writerow([f"sku-{i}", t])
    return buf.getvalue().encode("utf-8")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def wait_catalog(session, url: str, catalog_id: str, timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = session.get(f"{url}/v1/catalogs/{catalog_id}", timeout=10).json()
        if view["status"] in ("succeeded", "failed", "cancelled"):
            return view
        if time.monotonic() > deadline:
            raise TimeoutError(view)
        time.sleep(0.05)


def run_catalog(session, url: str, body: bytes) -> tuple[dict, float, float]:
    t0 = time.perf_counter()
    resp = session.post(f"{url}/v1/catalogs", data=body, headers={"Content-Type": "text/csv"}, timeout=600)
    t_post = time.perf_counter() - t0
    assert resp.status_code == 202, resp.text
    view = wait_catalog(session, url, resp.json()["catalog_id"])
    return view, time.perf_counter() - t0, t_post


def throughput(session, url: str, texts: list[str], bundle, chunk: int) -> dict:
    from training.text import normalize_key

    unique = list(dict.fromkeys(normalize_key(t) for t in texts))
    first_text = {}
    for t in texts:
        first_text.setdefault(normalize_key(t), t)
    unique_texts = [first_text[k] for k in unique]
    body = to_csv(texts)
    bundle.predict(unique_texts[:64])  # warm
    best_in = None
    for _ in range(2):
        t0 = time.perf_counter()
        for i in range(0, len(unique_texts), chunk):
            bundle.predict(unique_texts[i : i + chunk])
        elapsed = time.perf_counter() - t0
        best_in = elapsed if best_in is None else min(best_in, elapsed)
    cold, cold_s, cold_post = run_catalog(session, url, body)
    warm, warm_s, warm_post = run_catalog(session, url, body)
    in_rate = len(unique_texts) / best_in
    unique_rate = len(unique_texts) / cold_s
    return {
        "rows": len(texts),
        "unique_texts": len(unique_texts),
        "body_mb": round(len(body) / 1e6, 1),
        "chunk_size": chunk,
        "cold_cache": {
            "seconds": round(cold_s, 2),
            "upload_seconds": round(cold_post, 2),
            "rows_per_s": round(len(texts) / cold_s),
            "unique_rows_per_s": round(unique_rate),
            "inferences": cold["inferences"],
            "cached_rows": cold["cached_rows"],
            "failed_rows": cold["failed_rows"],
        },
        "in_process_predict_unique_per_s": round(in_rate),
        "ratio_unique_vs_in_process": round(unique_rate / in_rate, 3),
        "target_ratio": 0.8,
        "warm_cache_second_upload": {
            "seconds": round(warm_s, 2),
            "rows_per_s": round(len(texts) / warm_s),
            "inferences": warm["inferences"],
            "cached_rows": warm["cached_rows"],
        },
    }


def generated_body(texts: list[str], target_bytes: int, counter: dict):
    """CSV blocks of about 1 MB, real rows repeated, until ``target_bytes`` were produced."""
    i, sent, block = 0, 0, []
    header = b"id,text\n"
    counter["bytes"] = len(header)
    yield header
    rows_per_block = 1500
    while sent < target_bytes:
        block = to_csv(texts[(i % len(texts)) : (i % len(texts)) + rows_per_block], start=i + 1)
        i += rows_per_block
        sent += len(block)
        counter["bytes"] += len(block)
        counter["rows"] = i
        yield block


def ingest_memory(url: str, web_pid: int, texts: list[str], sizes_mb: list[int]) -> dict:
    import requests

    pids = children(web_pid) or [web_pid]
    pid = pids[0]
    out = {"web_worker_pid": pid, "baseline_rss_mb": round(rss_kb(pid) / 1024, 1), "uploads": []}
    for mb in sizes_mb:
        peak, stop = [0], threading.Event()

        def sample(peak=peak, stop=stop):
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kb(pid))
                time.sleep(0.05)

        counter: dict = {}
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        t0 = time.perf_counter()
        resp = requests.post(
            f"{url}/v1/catalogs",
            data=generated_body(texts, mb * 1_000_000, counter),
            headers={"Content-Type": "text/csv"},
            timeout=3600,
        )
        elapsed = time.perf_counter() - t0
        stop.set()
        thread.join()
        assert resp.status_code == 202, resp.text
        view = resp.json()
        requests.delete(f"{url}/v1/catalogs/{view['catalog_id']}", timeout=60)
        out["uploads"].append(
            {
                "mb": round(counter["bytes"] / 1e6, 1),
                "rows": view["total"],
                "chunks": view["chunks"],
                "ingest_seconds": round(elapsed, 1),
                "ingest_mb_per_s": round(counter["bytes"] / 1e6 / elapsed, 1),
                "peak_rss_mb": round(peak[0] / 1024, 1),
            }
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--ingest-mb", default="100,500", help="sizes of the memory runs (comma-separated; '' = none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import requests

    from training.bundle import default_models_dir, load_bundle, read_current
    from web.services import RedisServer, start_web, start_worker, wait_http, wait_worker

    threads = int(os.environ.get("CATEGORIZER_ORT_THREADS", "1"))
    bundle = load_bundle(threads=threads)
    texts = sample_rows()
    catalog = build_catalog(texts, args.rows, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="categorizer-catalog-bench-"))
    redis_server = RedisServer(tmp / "redis", appendonly=False, log_path=tmp / "redis.log").start()
    env = {
        "CATEGORIZER_MODEL_DIR": str(default_models_dir()),
        "CATEGORIZER_ORT_THREADS": str(threads),
        "CATEGORIZER_CATALOG_CHUNK_SIZE": str(args.chunk_size),
    }
    worker = start_worker(
        redis_server.url(),
        queues=("interactive", "catalog"),
        env=env,
        log_path=tmp / "worker.log",
        loglevel="WARNING",
    )
    web = start_web(redis_server.url(), env=env, log_path=tmp / "web.log")
    try:
        wait_http(web.url + "/healthz", process=web)
        wait_worker(redis_server.url(), worker.hostname, process=worker)
        session = requests.Session()
        result = {
            "service": "own: redis-server (no AOF) + 1 celery worker (prefork, concurrency 1, queues "
            "interactive,catalog) + gunicorn gthread (1 process, 64 threads)",
            "model_version": read_current(),
            "ort_threads": threads,
            **machine(),
            "throughput": throughput(session, web.url, catalog, bundle, args.chunk_size),
        }
        sizes = [int(x) for x in args.ingest_mb.split(",") if x.strip()]
        if sizes:
            result["web_memory"] = ingest_memory(web.url, web.pid, texts, sizes)
    finally:
        web.stop()
        worker.stop()
        redis_server.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
