"""Web-tier CPU and Redis commands per one-product job, in process (no HTTP server, no worker).

    python -m benchmarks.web_cost [--jobs 1500] [--code DIR] [--profile]

Runs ``create_app()`` over a private redis-server with Flask's test client: per job a
``POST /v1/jobs`` and a ``GET /v1/jobs/<id>?wait=1`` after a simulated worker finish (one Lua
``finish``). Prints JSON: CPU ms per job (this process: the web code, redis-py and the simulated
finish) and Redis commands per job by name (from ``INFO commandstats``; commands run inside Lua
scripts are counted too). ``--code DIR`` imports ``web``/``worker`` from another checkout (e.g.
``git archive <commit> web worker training | tar -x -C DIR``) to compare versions; ``--profile``
adds the top of a cProfile (cumulative time).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1500)
    ap.add_argument("--code", type=Path, default=None, help="import web/ and worker/ from this directory")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    if args.code:
        sys.path.insert(0, str(args.code.resolve()))
    import redis

    from web import create_app
    from web.services import RedisServer
    from worker.jobstore import JobStore, connect

    tmp = Path(tempfile.mkdtemp(prefix="web-cost-"))
    server = RedisServer(tmp / "redis", appendonly=False, log_path=tmp / "redis.log").start()
    try:
        url = server.url()
        client = create_app({"REDIS_URL": url, "MAX_QUEUE_DEPTH": 10**9}).test_client()
        store = JobStore(connect(url))
        result = json.dumps(
            [{"id": 1, "category": "Electronics", "confidence": 0.99, "probabilities": {}, "model_version": "v"}]
        )

        def one() -> None:
            job_id = client.post("/v1/jobs", json={"products": [{"id": 1, "text": "usb charger 20W"}]}).json["job_id"]
            store.finish(job_id, "succeeded", result, "v")
            assert client.get(f"/v1/jobs/{job_id}?wait=1").json["status"] == "succeeded"

        for _ in range(200):
            one()
        r = redis.Redis.from_url(url)
        r.config_resetstat()
        prof = cProfile.Profile() if args.profile else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        for _ in range(args.jobs):
            one()
        if prof:
            prof.disable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        stats = r.info("commandstats")
        calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_config"}
        out = {
            "code": str(args.code or "this checkout"),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "jobs": args.jobs,
            "cpu_ms_per_job": round(cpu / args.jobs * 1000, 3),
            "wall_ms_per_job": round(wall / args.jobs * 1000, 3),
            "redis_commands_per_job": {k: round(v / args.jobs, 2) for k, v in sorted(calls.items())},
        }
        if prof:
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(20)
            out["profile"] = buf.getvalue().splitlines()
        print(json.dumps(out, indent=2))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
