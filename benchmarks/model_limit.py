"""In-process ``Bundle.predict`` throughput (tokenizing included): the service's ceiling.

    python -m benchmarks.model_limit [--bundle DIR] [--threads 1] [--batches 1 32 256 1024]

Prints JSON: texts/s and ms per call at each batch size, on real unique texts, plus the
process's resident memory after loading the bundle.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from benchmarks.common import DEFAULT_DATA, best_rate, machine, real_texts


def measure(bundle, texts: list[str], batches: list[int], seconds: float) -> dict:
    out = {}
    for b in batches:
        pos = [0]

        def call(b=b, pos=pos) -> int:
            start = pos[0] % max(1, len(texts) - b)
            bundle.predict(texts[start : start + b])
            pos[0] += b
            return b

        rate = best_rate(call, seconds)
        out[str(b)] = {"texts_per_s": round(rate, 1), "ms_per_call": round(1000 * b / rate, 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="bundle dir (default: current)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256, 1024])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per batch size")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    from training.bundle import load_bundle

    bundle = load_bundle(args.bundle, threads=args.threads)
    load_s = time.perf_counter() - t0
    texts = real_texts(args.data)
    tok_rate = best_rate(lambda: len(bundle.tokenizer.encode(texts[:256])) or 256, 1.0)
    result = {
        "benchmark": "model_limit",
        "bundle": bundle.version,
        "seq_len": bundle.tokenizer.seq_len,
        "threads": args.threads,
        "unique_texts": len(texts),
        "import_and_load_s": round(load_s, 3),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tokenizer_texts_per_s": round(tok_rate, 1),
        "predict": measure(bundle, texts, args.batches, args.seconds),
        "tensorflow_imported": "tensorflow" in sys.modules,
        **machine(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
