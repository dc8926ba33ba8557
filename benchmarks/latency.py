"""Latency of the service, submit to result. Prints one JSON document.

1. ``--jobs`` (1,000) sequential single-product jobs: ``POST /v1/jobs`` then ``GET ?wait=``,
   p50/p95/p99 in ms, with where the time goes (HTTP submit, queue wait until a worker starts
   the task, worker time, and the rest: notification + HTTP read).
2. One ``--big`` (1,000) product job, submit to result, against in-process ``Bundle.predict``
   on the same texts (ratio; target <= 1.5).

By default it starts its own service exactly as production runs it (redis-server with AOF,
one ``celery worker`` process with prefork concurrency 1, gunicorn gthread) on free ports;
``--url`` measures a running service instead (then the in-process comparison loads the
bundle from ``CATEGORIZER_MODEL_DIR``/``saved_models``).

Texts are real product texts from the shared dataset (``category,text``, no header); they are
read at run time, never copied into the repository.

    python benchmarks/latency.py [--jobs 1000] [--big 1000] [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATA = Path(os.environ.get("CATEGORIZER_SHARED_DATA", REPO.parent / "shared" / "data")) / "ecommerce_sample.csv"


def load_texts(path: Path, n: int, seed: int) -> list[str]:
    csv.field_size_limit(1 << 30)
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        texts = list(dict.fromkeys(row[1] for row in csv.reader(fh) if len(row) >= 2 and row[1].strip()))
    random.Random(seed).shuffle(texts)
    return texts[:n]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[k], 2)


def summary(values: list[float]) -> dict:
    return {
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "mean": round(statistics.fmean(values), 2),
        "max": round(max(values), 2),
    }


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_singles(session, url: str, texts: list[str]) -> dict:
    """Sequential one-product jobs. The breakdown uses the server's timestamps (same host clock)."""
    total, post, parts = [], [], {k: [] for k in ("a", "b", "c", "d")}
    for text in texts:
        w0, t0 = time.time(), time.perf_counter()
        resp = session.post(url + "/v1/jobs", json={"products": [{"text": text[:20000]}]})
        t1 = time.perf_counter()
        assert resp.status_code == 202, resp.text
        job = session.get(url + resp.headers["Location"], params={"wait": "10"}).json()
        t2 = time.perf_counter()
        w2 = w0 + (t2 - t0)
        assert job["status"] == "succeeded", job
        total.append((t2 - t0) * 1000)
        post.append((t1 - t0) * 1000)
        submitted, started, finished = ts(job["submitted_at"]), ts(job["started_at"]), ts(job["finished_at"])
        parts["a"].append((submitted - w0) * 1000)
        parts["b"].append((started - submitted) * 1000)
        parts["c"].append((finished - started) * 1000)
        parts["d"].append((w2 - finished) * 1000)
    return {
        "jobs": len(texts),
        "submit_to_result_ms": summary(total),
        "http_post_ms": summary(post),
        "breakdown_ms_p50": {
            "client_to_job_record_written (HTTP, parse, validate)": pct(parts["a"], 50),
            "record_to_task_started (publish, broker, worker dispatch)": pct(parts["b"], 50),
            "task_in_worker (input, model, result write + notify)": pct(parts["c"], 50),
            "finished_to_client_has_result (wake long-poll, GET response)": pct(parts["d"], 50),
        },
        "targets": {"p50_ms": 15, "p99_ms": 50},
    }


def run_big(session, url: str, texts: list[str], bundle, repeats: int) -> dict:
    texts = [t[:20000] for t in texts]
    bundle.predict(texts[:16])  # warm
    inproc = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        bundle.predict(texts)
        inproc.append((time.perf_counter() - t0) * 1000)
    service, post_ms, queue_ms, worker_ms = [], [], [], []
    body = {"products": [{"id": i, "text": t} for i, t in enumerate(texts)]}
    for _ in range(repeats):
        t0 = time.perf_counter()
        resp = session.post(url + "/v1/jobs", json=body)
        t1 = time.perf_counter()
        assert resp.status_code == 202, resp.text
        job = session.get(url + resp.headers["Location"], params={"wait": "30"}).json()
        service.append((time.perf_counter() - t0) * 1000)
        post_ms.append((t1 - t0) * 1000)
        assert job["status"] == "succeeded" and len(job["results"]) == len(texts)
        queue_ms.append((ts(job["started_at"]) - ts(job["submitted_at"])) * 1000)
        worker_ms.append((ts(job["finished_at"]) - ts(job["started_at"])) * 1000)
    best_in, best_service = statistics.median(inproc), statistics.median(service)
    return {
        "products": len(texts),
        "in_process_predict_ms_median": round(best_in, 1),
        "service_submit_to_result_ms_median": round(best_service, 1),
        "breakdown_ms_median": {
            "http_post": round(statistics.median(post_ms), 1),
            "queue_wait_until_task_starts": round(statistics.median(queue_ms), 1),
            "task_in_worker": round(statistics.median(worker_ms), 1),
        },
        "ratio": round(best_service / best_in, 3),
        "target_ratio": 1.5,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="measure a running service (default: start one)")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--big", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="runs of the big job (median)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "solo"], help="worker pool of the own service")
    args = parser.parse_args()

    import requests

    from training.bundle import default_models_dir, load_bundle, read_current
    from web.services import RedisServer, start_web, start_worker, wait_http, wait_worker

    texts = load_texts(DATA, args.jobs + args.big + args.warmup, args.seed)
    warm, singles, big = texts[: args.warmup], texts[args.warmup : args.warmup + args.jobs], texts[-args.big :]
    threads = int(os.environ.get("CATEGORIZER_ORT_THREADS", "1"))
    bundle = load_bundle(threads=threads)

    procs, redis_server = [], None
    url = args.url
    try:
        if url is None:
            tmp = Path(tempfile.mkdtemp(prefix="categorizer-bench-"))
            redis_server = RedisServer(tmp / "redis", log_path=tmp / "redis.log").start()
            env = {"CATEGORIZER_MODEL_DIR": str(default_models_dir()), "CATEGORIZER_ORT_THREADS": str(threads)}
            worker = start_worker(
                redis_server.url(), pool=args.pool, env=env, log_path=tmp / "worker.log", loglevel="WARNING"
            )
            web = start_web(redis_server.url(), log_path=tmp / "web.log")
            procs = [worker, web]
            url = web.url
            wait_http(url + "/healthz", process=web)
            wait_worker(redis_server.url(), worker.hostname, process=worker)
        session = requests.Session()
        run_singles(session, url, warm)
        result = {
            "service": url
            if args.url
            else f"own: redis-server (AOF) + 1 celery worker ({args.pool}, concurrency 1) "
            "+ gunicorn gthread (1 process, 64 threads)",
            "model_version": read_current(),
            "ort_threads": threads,
            "single_product_jobs": run_singles(session, url, singles),
            "big_job": run_big(session, url, big, bundle, args.repeats),
        }
    finally:
        for proc in reversed(procs):
            proc.stop()
        if redis_server:
            redis_server.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
