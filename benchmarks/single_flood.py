"""A flood of single-product jobs through the full service, micro-batching ON and OFF in one run.

    python -m benchmarks.single_flood [--seconds 30] [--clients 32] [--rate 200] [--profile]
        [--modes on off batch-submit] [--batch-jobs 100] [--batch-clients 8]

For each mode (``on``: small jobs go to the ``interactive-batch`` queue and are categorized
many per model call; ``off``: one task and one model call per job) it starts its own service
(redis-server with AOF on a free port, one ``celery worker`` process with prefork concurrency
``--worker-processes``, gunicorn gthread with ``--web-workers`` processes x 64 threads) and runs

1. closed loop: ``--clients`` concurrent clients (in ``--client-procs`` processes), each
   submitting one-product jobs (``POST /v1/jobs``, then ``GET ?wait=``) for ``--seconds``;
   completed jobs/s and p50/p95/p99 submit-to-result latency;
2. open loop: ``--rate`` jobs/s offered at fixed times for ``--open-seconds`` (latency counted
   from the planned send time, so a slow service cannot hide its queueing).

It prints JSON with the in-process model limit measured in the same run (``Bundle.predict``
texts/s at batch 1 and 256) and the ratios to it, CPU cores used per process group in the
measured window, the load average, and with ``--profile`` a py-spy summary of where the web
and worker processes spend their CPU (HTTP, JSON, broker, job store, tokenizer, model, ...).
Texts are real product texts from the shared dataset.

``batch-submit`` mode: micro-batching on, and each of ``--batch-clients`` closed-loop clients
sends ``--batch-jobs`` one-product jobs per ``POST /v1/jobs:batch`` and reads them with one
``GET /v1/jobs?ids=...&wait=`` (what a pipeline/ingestion client reaches); its latency is each
job's submit-to-result time (the whole request's). No open loop in this mode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import machine, real_texts  # noqa: E402
from benchmarks.flood import model_limit, profile, run_load, service  # noqa: E402


def run_mode(args, microbatch: bool, texts: list[str], batch: int = 0) -> dict:
    out: dict = {"microbatch": microbatch}
    if batch:
        out["client"] = f"batch-submit: {batch} one-product jobs per POST /v1/jobs:batch + GET /v1/jobs?ids=&wait="
    with service(
        microbatch=microbatch,
        worker_processes=args.worker_processes,
        web_workers=args.web_workers,
        batch_max_size=args.batch_max_size,
        batch_max_wait_ms=args.batch_max_wait_ms,
        batch_nodes=args.batch_nodes,
    ) as svc:
        watch = {"web (gunicorn)": svc["web_pid"], "worker (celery)": svc["worker_pid"]}
        watch |= {f"batch worker {k} (celery)": pid for k, pid in enumerate(svc["batch_worker_pids"])}
        profiled: dict = {}

        def window(seconds: float) -> None:
            if args.profile:
                pids = {"web": svc["web_pid"], "worker": svc["worker_pid"]}
                pids |= {f"batch worker {k}": pid for k, pid in enumerate(svc["batch_worker_pids"])}
                profiled.update(profile(pids, seconds, Path(tempfile.mkdtemp(prefix="flood-prof-"))))
            else:
                import time

                time.sleep(seconds)

        out["closed_loop"] = run_load(
            svc["url"],
            texts,
            clients=args.clients,
            seconds=args.seconds,
            warmup=args.warmup,
            procs=args.client_procs,
            batch=batch,
            on_window=window,
            watch=watch,
        )
        out["closed_loop"]["clients"] = args.clients
        if profiled:
            out["where_time_goes_py_spy"] = profiled
        if args.rate and not batch:
            out["open_loop"] = run_load(
                svc["url"],
                texts,
                clients=args.open_threads,
                seconds=args.open_seconds,
                warmup=args.warmup,
                procs=args.client_procs,
                rate=args.rate,
                watch=watch,
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="closed-loop measured window")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--client-procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--rate", type=float, default=200.0, help="open-loop offered jobs/s (0: skip)")
    ap.add_argument("--open-seconds", type=float, default=15.0)
    ap.add_argument("--open-threads", type=int, default=64, help="open-loop client threads in total")
    ap.add_argument(
        "--modes",
        nargs="+",
        default=["on", "off", "batch-submit"],
        choices=["on", "off", "batch-submit"],
        help="batch-submit: micro-batching on, and each client sends --batch-jobs one-product jobs per request",
    )
    ap.add_argument("--batch-jobs", type=int, default=100, help="jobs per request in the batch-submit mode")
    ap.add_argument("--batch-clients", type=int, default=8, help="closed-loop clients in the batch-submit mode")
    ap.add_argument("--worker-processes", type=int, default=1)
    ap.add_argument("--web-workers", type=int, default=1)
    ap.add_argument(
        "--batch-nodes",
        type=int,
        default=0,
        help="separate celery worker processes for the micro-batch queue (as serve/docker-compose run it); "
        "0: one worker consumes both queues",
    )
    ap.add_argument("--batch-max-size", type=int, default=256)
    ap.add_argument("--batch-max-wait-ms", type=float, default=10)
    ap.add_argument("--profile", action="store_true", help="py-spy the web and worker in the closed-loop window")
    args = ap.parse_args(argv)

    texts = [t[:2000] for t in real_texts()[:5000]]
    result: dict = {
        "benchmark": "single_flood",
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "config": {k: v for k, v in vars(args).items()},
        **machine(),
    }
    limit = model_limit(texts)
    result["model_limit_in_process"] = limit
    for mode in args.modes:
        if mode == "batch-submit":
            batch_args = argparse.Namespace(**{**vars(args), "clients": args.batch_clients})
            result[f"microbatch_{mode}"] = run_mode(batch_args, True, texts, batch=args.batch_jobs)
        else:
            result[f"microbatch_{mode}"] = run_mode(args, mode == "on", texts)
    for mode in args.modes:
        rate = result[f"microbatch_{mode}"]["closed_loop"]["completed_jobs_per_s"]
        result[f"microbatch_{mode}"]["ratio_to_model_limit"] = {
            k.replace("_texts_per_s", ""): round(rate / v, 3) for k, v in limit.items()
        }
    if {"on", "off"} <= set(args.modes):
        on = result["microbatch_on"]["closed_loop"]["completed_jobs_per_s"]
        off = result["microbatch_off"]["closed_loop"]["completed_jobs_per_s"]
        result["speedup_on_vs_off"] = round(on / off, 2) if off else None
    if {"batch-submit", "off"} <= set(args.modes):
        batch = result["microbatch_batch-submit"]["closed_loop"]["completed_jobs_per_s"]
        off = result["microbatch_off"]["closed_loop"]["completed_jobs_per_s"]
        result["speedup_batch_submit_vs_off"] = round(batch / off, 2) if off else None
    result["targets"] = {"on_jobs_per_s": 1000, "speedup_on_vs_off": 3, "p99_ms_at_200_offered": 100}
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
