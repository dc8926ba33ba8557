"""Throughput with 1 and 2 worker processes (prefork concurrency), one ONNX Runtime thread each.

    python -m benchmarks.scaling [--seconds 20] [--products 1 64] [--clients 32]

For each job size in ``--products`` and each worker count (1, 2), it starts its own service
(redis-server, one ``celery worker`` with that many pool processes, gunicorn gthread with
``--web-workers`` processes; micro-batching on, so one-product jobs are batched and bigger jobs
run one per task) and floods it with ``--clients`` closed-loop clients for ``--seconds``. It
prints JSON: products/s and jobs/s per configuration, the 2-vs-1 ratio, the ratio to the
in-process model limit (1 thread, batch 256) measured in the same run, the CPU cores each
process group used in the measured window and the load average.

One-product jobs show the web tier's limit (the worker is mostly idle, so a second worker
process adds nothing); 64-product jobs put the model on the critical path and show how
worker processes scale on 2 cores. ``--profile`` adds a py-spy summary per run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import machine, real_texts  # noqa: E402
from benchmarks.flood import model_limit, profile, run_load, service  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--client-procs", type=int, default=2)
    ap.add_argument("--products", type=int, nargs="+", default=[1, 64], help="products per job")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes")
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)

    texts = [t[:2000] for t in real_texts()[:5000]]
    result: dict = {
        "benchmark": "scaling",
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "config": vars(args),
        **machine(),
    }
    limit = model_limit(texts)
    result["model_limit_in_process"] = limit
    for products in args.products:
        runs = {}
        for n in args.workers:
            with service(microbatch=True, worker_processes=n, web_workers=args.web_workers) as svc:
                profiled: dict = {}

                def window(seconds: float, svc=svc, profiled=profiled) -> None:
                    if args.profile:
                        pids = {"web": svc["web_pid"], "worker": svc["worker_pid"]}
                        profiled.update(profile(pids, seconds, Path(tempfile.mkdtemp(prefix="scaling-prof-"))))
                    else:
                        time.sleep(seconds)

                run = run_load(
                    svc["url"],
                    texts,
                    clients=args.clients,
                    seconds=args.seconds,
                    warmup=args.warmup,
                    procs=args.client_procs,
                    products=products,
                    on_window=window,
                    watch={"web (gunicorn)": svc["web_pid"], "worker (celery)": svc["worker_pid"]},
                )
                run["ratio_to_model_limit_batch_256"] = round(run["products_per_s"] / limit["batch_256_texts_per_s"], 3)
                if profiled:
                    run["where_time_goes_py_spy"] = profiled
                runs[f"{n}_worker_processes"] = run
        key = f"{products}_products_per_job"
        result[key] = runs
        if len(args.workers) >= 2:
            a, b = (runs[f"{n}_worker_processes"]["products_per_s"] for n in args.workers[:2])
            result[key][f"ratio_{args.workers[1]}_vs_{args.workers[0]}"] = round(b / a, 2) if a else None
    result["target_ratio_2_vs_1"] = 1.6
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
