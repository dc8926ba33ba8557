"""Pieces shared by ``single_flood`` and ``scaling``: a full service, HTTP load generators
(closed and open loop, in separate processes), the in-process model limit and a py-spy profile
summary of the service's processes.

The load generator uses ``http.client`` with one keep-alive connection per client thread (the
cheapest Python HTTP client: on a 2-core machine it shares the CPU with the service). Each
client process prints its measurements as JSON on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.latency import pct  # noqa: E402


def latency_summary(values_ms: list[float]) -> dict:
    if not values_ms:
        return {}
    return {q: pct(values_ms, float(q[1:])) for q in ("p50", "p95", "p99")} | {"max": round(max(values_ms), 2)}


# -- the service ------------------------------------------------------------------------------------


@contextlib.contextmanager
def service(
    *,
    microbatch: bool,
    worker_processes: int = 1,
    web_workers: int = 1,
    web_threads: int = 64,
    batch_max_size: int = 256,
    batch_max_wait_ms: float = 10,
    ort_threads: int = 1,
    tmp: Path | None = None,
    batch_nodes: int = 0,
):
    """redis-server (AOF, own port) + one ``celery worker`` (prefork, ``worker_processes``) +
    gunicorn gthread. Yields a dict with ``url`` and the processes' pids.

    ``batch_nodes`` > 0 (with ``microbatch``): the micro-batch queue is consumed by that many
    separate ``celery worker`` processes (concurrency 1 each, as ``categorizer serve`` and
    docker-compose run it) and the first worker consumes ``interactive`` only; 0: one worker
    consumes both queues."""
    from training.bundle import default_models_dir
    from web.services import RedisServer, start_web, start_worker, wait_http, wait_worker

    tmp = Path(tmp or tempfile.mkdtemp(prefix="categorizer-flood-"))
    redis_server = RedisServer(tmp / "redis", log_path=tmp / "redis.log").start()
    url = redis_server.url()
    queues = ("interactive", "interactive-batch") if microbatch and not batch_nodes else ("interactive",)
    worker_env = {
        "CATEGORIZER_MODEL_DIR": str(default_models_dir()),
        "CATEGORIZER_ORT_THREADS": str(ort_threads),
        "CATEGORIZER_BATCH_MAX_SIZE": str(batch_max_size),
        "CATEGORIZER_BATCH_MAX_WAIT_MS": str(batch_max_wait_ms),
    }
    web_env = {
        "CATEGORIZER_MICROBATCH": "true" if microbatch else "false",
        "CATEGORIZER_LOG_LEVEL": "WARNING",
        "CATEGORIZER_MAX_QUEUE_DEPTH": "100000",
    }
    procs = []
    try:
        worker = start_worker(
            url,
            concurrency=worker_processes,
            queues=queues,
            env=worker_env,
            log_path=tmp / "worker.log",
            loglevel="WARNING",
        )
        procs.append(worker)
        batch_workers = []
        for k in range(batch_nodes if microbatch else 0):
            batch_workers.append(
                start_worker(
                    url,
                    concurrency=1,
                    queues=("interactive-batch",),
                    env=worker_env,
                    log_path=tmp / f"batch-worker-{k}.log",
                    loglevel="WARNING",
                )
            )
            procs.append(batch_workers[-1])
        web = start_web(url, workers=web_workers, threads=web_threads, env=web_env, log_path=tmp / "web.log")
        procs.append(web)
        wait_http(web.url + "/healthz", process=web)
        for w in [worker, *batch_workers]:
            wait_worker(url, w.hostname, process=w)
        yield {
            "url": web.url,
            "redis_url": url,
            "web_pid": web.pid,
            "worker_pid": worker.pid,
            "batch_worker_pids": [w.pid for w in batch_workers],
            "tmp": str(tmp),
        }
    finally:
        for proc in reversed(procs):
            proc.stop()
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# -- load generator (runs in child processes) -----------------------------------------------------


class HTTP:
    """One keep-alive connection; reconnects once on a dropped connection."""

    def __init__(self, url: str):
        u = urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body, headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def one_job(client: HTTP, texts: list[str]) -> tuple[bool, str]:
    """Submit one job (a product per text) and long-poll its result. Returns (succeeded, status or error)."""
    products = len(texts)
    body = json.dumps({"products": [{"id": k, "text": text} for k, text in enumerate(texts)]}).encode()
    status, data = client.request("POST", "/v1/jobs", body)
    if status != 202:
        return False, f"post {status}"
    job_id = json.loads(data)["job_id"]
    while True:
        status, data = client.request("GET", f"/v1/jobs/{job_id}?wait=10")
        job = json.loads(data)
        if job["status"] in ("succeeded", "failed"):
            return job["status"] == "succeeded" and len(job["results"]) == products, job["status"]


def batch_jobs(client: HTTP, texts: list[str]) -> tuple[int, str]:
    """Submit one one-product job per text in one ``POST /v1/jobs:batch`` and long-poll them all
    with ``GET /v1/jobs?ids=&wait=``. Returns (jobs that succeeded, error or "")."""
    body = json.dumps({"jobs": [{"id": k, "text": text} for k, text in enumerate(texts)]}).encode()
    status, data = client.request("POST", "/v1/jobs:batch", body)
    if status != 202:
        return 0, f"post {status}"
    pending = [j["job_id"] for j in json.loads(data)["jobs"]]
    ok = 0
    while pending:
        status, data = client.request("GET", "/v1/jobs?ids=" + ",".join(pending) + "&wait=10")
        if status != 200:
            return ok, f"get {status}"
        still = []
        for job in json.loads(data)["jobs"]:
            if job.get("status") == "succeeded" and len(job["results"]) == 1:
                ok += 1
            elif job.get("status") not in ("failed", None):
                still.append(job["job_id"])
        pending = still
    return ok, ""


def client_main(argv: list[str]) -> int:
    """``python -m benchmarks.flood --url U --texts F --start T --seconds S ...``: prints JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--texts", required=True, type=Path)
    ap.add_argument("--start", type=float, required=True, help="wall time when the measured window starts")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--rate", type=float, default=0.0, help="open loop: jobs/s of this process (0: closed loop)")
    ap.add_argument("--products", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=0, help="jobs per POST /v1/jobs:batch (0: one POST per job)")
    args = ap.parse_args(argv)
    texts = json.loads(args.texts.read_text())
    begin = args.start - args.warmup
    end = args.start + args.seconds
    lat: list[float] = []
    errors: Counter = Counter()
    lock = threading.Lock()
    while time.time() < begin - 0.001:
        time.sleep(min(0.05, begin - time.time()))

    def record(ok: bool, what: str, due: float, done: float) -> None:
        with lock:
            if not ok:
                errors[what] += 1
            elif args.start <= done <= end:
                lat.append((done - due) * 1000)

    def closed(k: int) -> None:
        client, rng = HTTP(args.url), random.Random(args.seed * 1000 + k)
        while time.time() < end:
            t0 = time.time()
            if args.batch:  # a pipeline client: many one-product jobs per request
                ok, what = batch_jobs(client, [t for _ in range(args.batch) for t in rng.sample(texts, 1)])
                done = time.time()
                for _ in range(ok):
                    record(True, "", t0, done)
                if what or ok < args.batch:
                    record(False, what or "failed", t0, done)
                continue
            ok, what = one_job(client, rng.sample(texts, args.products))
            record(ok, what, t0, time.time())

    schedule: queue.Queue = queue.Queue()

    def opened(k: int) -> None:
        client, rng = HTTP(args.url), random.Random(args.seed * 1000 + k)
        while True:
            due = schedule.get()
            if due is None:
                return
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            ok, what = one_job(client, rng.sample(texts, args.products))
            record(ok, what, due, time.time())  # from the planned send time: no coordinated omission

    target = opened if args.rate else closed
    threads = [threading.Thread(target=target, args=(k,), daemon=True) for k in range(args.threads)]
    for t in threads:
        t.start()
    if args.rate:
        n = int((end - begin) * args.rate)
        for i in range(n):
            schedule.put(begin + i / args.rate)
        for _ in threads:
            schedule.put(None)
    for t in threads:
        t.join(end - time.time() + 30)
    print(json.dumps({"latencies_ms": lat, "errors": dict(errors)}))
    return 0


def run_load(
    url: str,
    texts: list[str],
    *,
    clients: int,
    seconds: float,
    warmup: float,
    procs: int = 2,
    rate: float = 0.0,
    products: int = 1,
    batch: int = 0,
    on_window=None,
    watch: dict[str, int] | None = None,
) -> dict:
    """Run the load from ``procs`` client processes. Closed loop (``clients`` in total) or open
    loop at ``rate`` jobs/s in total. ``on_window(seconds)`` runs in this process during the
    measured window (e.g. a profiler). ``watch`` names pids (with their children) whose CPU time
    in the window is reported, besides the load generator's. Returns completed jobs/s, latency
    percentiles and CPU use."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(texts, fh)
        texts_file = fh.name
    start = time.time() + 1.5 + warmup  # time for the client processes to start
    children = []
    try:
        for p in range(procs):
            argv = [sys.executable, "-m", "benchmarks.flood", "--url", url, "--texts", texts_file]
            argv += ["--start", repr(start), "--warmup", str(warmup), "--seconds", str(seconds)]
            argv += ["--threads", str(max(1, clients // procs)), "--rate", str(rate / procs)]
            argv += ["--products", str(products), "--seed", str(p)]
            argv += ["--batch", str(batch)]
            children.append(subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True))
        time.sleep(max(0.0, start - time.time()))
        load0 = os.getloadavg()
        pids = dict(watch or {}) | {f"load generator {k}": c.pid for k, c in enumerate(children)}
        cpu0, t0 = {n: cpu_seconds(p) for n, p in pids.items()}, time.monotonic()
        if on_window is not None:
            on_window(seconds)
        else:
            time.sleep(seconds)
        elapsed = time.monotonic() - t0
        cpu = {n: round((cpu_seconds(p) - cpu0[n]) / elapsed, 2) for n, p in pids.items()}
        outs = [json.loads(c.communicate(timeout=seconds + warmup + 120)[0]) for c in children]
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
        os.unlink(texts_file)
    lat = [x for o in outs for x in o["latencies_ms"]]
    errors: Counter = Counter()
    for o in outs:
        errors.update(o["errors"])
    result = {
        "completed_jobs_per_s": round(len(lat) / seconds, 1),
        "products_per_s": round(len(lat) * products / seconds, 1),
        "completed_in_window": len(lat),
        "errors": dict(errors),
        "submit_to_result_ms": latency_summary(lat),
    }
    if rate:
        result["offered_jobs_per_s"] = rate
    result["cpu_cores_used_in_window"] = cpu | {"total (of 2)": round(sum(cpu.values()), 2)}
    result["loadavg_at_window_start"] = [round(x, 2) for x in load0]
    return result


# -- model limit ------------------------------------------------------------------------------------


def model_limit(texts: list[str], batches=(1, 256), seconds: float = 1.5, threads: int = 1) -> dict:
    """In-process ``Bundle.predict`` texts/s at these batch sizes (benchmarks.model_limit)."""
    from benchmarks.model_limit import measure
    from training.bundle import load_bundle

    bundle = load_bundle(threads=threads)
    out = measure(bundle, texts, list(batches), seconds)
    return {f"batch_{b}_texts_per_s": v["texts_per_s"] for b, v in out.items()}


# -- where the time goes: py-spy ----------------------------------------------------------------------

# (category, prefixes of py-spy's short file names); the first frame from the leaf that matches decides
_FRAME_RULES = [
    ("model (onnxruntime)", ("onnxruntime/",)),
    ("tokenizer", ("training/tokenizer",)),
    ("JSON", ("json/",)),
    ("logging", ("logging/",)),
    ("redis client", ("redis/",)),
    ("broker (kombu)", ("kombu/",)),
    ("celery-batches", ("celery_batches/",)),
    ("celery result backend", ("celery/backends/",)),
    ("celery (protocol, consumer, pool)", ("celery/", "billiard/", "vine/")),
    ("our code (web/, worker/, training/)", ("web/", "worker/", "training/")),
    ("flask", ("flask/",)),
    ("werkzeug (WSGI, HTTP parsing)", ("werkzeug/",)),
    ("gunicorn (HTTP server)", ("gunicorn/",)),
    ("HTTP client", ("http/client",)),
]


def _category(frames: list[str]) -> str:
    files = [f[f.rfind("(") + 1 :] if "(" in f else f for f in frames]
    for name, keys in _FRAME_RULES:
        for f in reversed(files):
            if f.startswith(keys):
                stack = " ".join(files)
                if name == "redis client":  # whose redis calls?
                    if " kombu/" in stack:
                        return "broker (kombu over redis)"
                    if " celery/backends/" in stack:
                        return "celery result backend"
                    return "job store (redis)"
                if name == "JSON" and " kombu/" in stack:
                    return "broker (kombu) JSON"
                return name
    leaf = files[-1] if files else "?"
    return "python stdlib: " + leaf.split(":")[0].split("/")[0]


def summarize_raw(path: Path) -> dict:
    """Summarize py-spy ``--format raw`` output: per process, share of CPU samples per category."""
    per_proc: dict[str, Counter] = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        proc = "?"
        if frames and frames[0].startswith("process "):
            head = frames.pop(0)
            cmd = head.split(":", 1)[-1]
            pid = head.split()[1].split(":")[0]
            if "gunicorn" in cmd:
                proc = "web (gunicorn)"
            elif "celery" in cmd:
                proc = "worker (celery)"
            else:
                proc = cmd[:60]
            proc += " pid " + pid
        frames = [f for f in frames if not f.startswith("thread ")]
        per_proc.setdefault(proc, Counter())[_category(frames)] += int(count)
    out = {}
    for proc, counts in sorted(per_proc.items()):
        total = sum(counts.values())
        share = {k: round(v / total, 3) for k, v in counts.most_common() if v / total >= 0.005}
        out[proc] = {"samples": total, "share": share}
    return out


def py_spy_available() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile(pids: dict[str, int], seconds: float, out_dir: Path, rate: int = 50) -> dict:
    """py-spy record (raw) of each pid and its children for ``seconds``; returns summaries.
    Samples only threads that run (py-spy's default), i.e. where CPU time goes."""
    exe = py_spy_available()
    if exe is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, pid in pids.items():
        raw = out_dir / f"{name}.raw"
        argv = [exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--format", "raw"]
        argv += ["--rate", str(rate), "--duration", str(max(1, int(seconds))), "--output", str(raw)]
        procs[name] = (subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), raw)
    out = {}
    for name, (proc, raw) in procs.items():
        _, err = proc.communicate(timeout=seconds + 60)
        if raw.exists():
            out.update(summarize_raw(raw))
        else:
            out[name] = {"error": err.strip()[-300:]}
    return out


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of ``pid`` and its (live) descendants, from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                kids = (task / "children").read_text().split()
                todo.extend(int(k) for k in kids)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total


if __name__ == "__main__":
    sys.exit(client_main(sys.argv[1:]))
