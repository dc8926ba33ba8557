"""Does length bucketing help? One ``Bundle.predict`` call on a batch of real texts versus the
same batch split by token length into buckets (one call per bucket), at several batch sizes.

    python -m benchmarks.bucketing [--batches 32 256 1024] [--edges 8 16 32]

Each call already cuts its rows to the batch's longest text and the ONNX LSTM reads every row's
own length (``sequence_lens``), so a text's result does not depend on its batch either way
(checked here too); the question is only speed. Prints JSON (texts/s, best of 3, and the load
average: the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

import numpy as np

from benchmarks.common import best_rate, machine, real_texts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 256, 1024])
    ap.add_argument("--edges", type=int, nargs="+", default=[8, 16, 32], help="bucket upper token lengths")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)

    from training.bundle import load_bundle
    from training.tokenizer import lengths

    bundle = load_bundle(threads=1)
    texts = real_texts()
    random.Random(0).shuffle(texts)
    lens = lengths(bundle.tokenizer.encode(texts[:4096]))
    out = {
        "benchmark": "bucketing",
        "bundle": bundle.version,
        "seq_len": bundle.tokenizer.seq_len,
        "token_length_percentiles": {str(q): int(np.percentile(lens, q)) for q in (10, 50, 90, 99)},
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        **machine(),
    }
    edges = sorted(args.edges)

    def bucketed(batch: list[str]) -> list[np.ndarray]:
        n = lengths(bundle.tokenizer.encode(batch))  # tokenizing once more is part of the cost
        order = np.argsort(n, kind="stable")
        probs = np.empty((len(batch), len(bundle.labels)), dtype=np.float32)
        lo = 0
        for edge in [*edges, None]:
            hi = len(order) if edge is None else int(np.searchsorted(n[order], edge, side="right"))
            if hi > lo:
                idx = order[lo:hi]
                probs[idx] = bundle.predict_proba([batch[i] for i in idx])
            lo = hi
        return probs

    for b in args.batches:
        batch = texts[:b]
        same = np.allclose(bucketed(batch), bundle.predict_proba(batch), atol=1e-6)
        one = best_rate(lambda batch=batch: len(bundle.predict_proba(batch)), args.seconds)
        split = best_rate(lambda batch=batch: len(bucketed(batch)), args.seconds)
        out[f"batch_{b}"] = {
            "one_call_texts_per_s": round(one, 1),
            "bucketed_texts_per_s": round(split, 1),
            "speedup": round(split / one, 3),
            "results_identical": bool(same),
        }
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
