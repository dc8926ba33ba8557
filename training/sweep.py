"""Choose hyper-parameters on the validation split (never on test or OOD).

    python -m training.sweep --data ../shared/data/ecommerce_sample.csv [--seeds 1 2] > sweep.json

Trains each configuration with each seed into a throw-away model directory and prints, as
JSON, the validation accuracy and macro-F1 (mean over seeds) and the fit time. The test
split is scored by ``train`` as a side effect but is not printed here, so that the choice
cannot look at it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from training.train import TrainConfig, train

# One change at a time against the baseline, so each effect is visible on its own.
GRID: dict[str, dict] = {
    "baseline seq64 vocab20k": {},
    "seq_len 32": {"seq_len": 32},
    "seq_len 128": {"seq_len": 128},
    "seq_len 200": {"seq_len": 200},
    "vocab 5k": {"vocab_size": 5000},
    "dropout 0.5": {"dropout": 0.5},
    "embed 128": {"embed_dim": 128},
    "lr 1e-3 patience 3": {"learning_rate": 1e-3, "patience": 3},
    # second round: the two winners of the first round together, then one change each
    "R2 embed 128 + dropout 0.5": {"embed_dim": 128, "dropout": 0.5},
    "R2 + last+mean pooling": {"embed_dim": 128, "dropout": 0.5, "pooling": "last+mean"},
    "R2 + embed dropout 0.2": {"embed_dim": 128, "dropout": 0.5, "embed_dropout": 0.2},
    "R2 + seq_len 128": {"embed_dim": 128, "dropout": 0.5, "seq_len": 128},
    # third round, after the vocabulary was fitted on the kept (first seq_len) tokens only;
    # embed 128 + dropout 0.5 are now the defaults
    "R3 vocab from kept tokens": {},
    "R3 + min_count 2": {"min_count": 2},
    "R3 + min_count 3": {"min_count": 3},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", nargs="*", help="names from the grid to run")
    args = ap.parse_args(argv)
    results = []
    for name, change in GRID.items():
        if args.only and name not in args.only:
            continue
        runs = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                # the split seed stays fixed; only the weights' initialization and shuffling vary
                cfg = TrainConfig(data=args.data, models_dir=Path(tmp), verbose=0, init_seed=seed)
                res = train(replace(cfg, **change))
            ev = res.metrics["evaluation"]["lstm"]["val"]
            runs.append(
                {
                    "seed": seed,
                    "val_accuracy": ev["accuracy"],
                    "val_macro_f1": ev["macro_f1"],
                    "fit_seconds": res.metrics["training"]["fit_seconds"],
                    "epochs": res.metrics["training"]["epochs_run"],
                }
            )
        mean = {k: sum(r[k] for r in runs) / len(runs) for k in ("val_accuracy", "val_macro_f1", "fit_seconds")}
        results.append({"name": name, "change": change, **mean, "runs": runs})
        print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
