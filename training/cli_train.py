"""``categorizer train``: train, evaluate, export and optionally publish a bundle (needs TensorFlow)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from training.train import TrainConfig

    d = TrainConfig(data=Path("."))
    p = sub.add_parser(
        "train",
        help="train a model bundle from a category,text CSV (needs the 'train' extra)",
        description="Train the LSTM on a dataset CSV (category,text; with or without a header), "
        "evaluate it honestly (de-duplicated stratified split, TF-IDF+SVM baseline, optional OOD set), "
        "export it to ONNX and write a bundle to the model directory.",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset CSV (category,text)")
    p.add_argument("--models", type=Path, help="model directory (default: CATEGORIZER_MODEL_DIR or ./saved_models)")
    p.add_argument("--version", help="bundle version name (default: vYYYYMMDD-HHMMSS)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"maximum epochs (default {d.epochs})")
    p.add_argument("--seq-len", type=int, default=d.seq_len, help=f"tokens kept per text (default {d.seq_len})")
    p.add_argument("--vocab-size", type=int, default=d.vocab_size, help=f"vocabulary size (default {d.vocab_size})")
    p.add_argument(
        "--min-count", type=int, default=d.min_count, help="keep words seen in at least this many training texts"
    )
    p.add_argument("--embed-dim", type=int, default=d.embed_dim)
    p.add_argument("--lstm-units", type=int, default=d.lstm_units)
    p.add_argument("--dense-units", type=int, default=d.dense_units)
    p.add_argument("--dropout", type=float, default=d.dropout, help="dropout before the dense layers")
    p.add_argument("--embed-dropout", type=float, default=d.embed_dropout, help="spatial dropout on embeddings")
    p.add_argument(
        "--pooling",
        choices=("last", "last+mean"),
        default=d.pooling,
        help="BiLSTM features: last states, or last states + mean over tokens",
    )
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience on val loss")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-rows", type=int, help="train on a seeded random subset of this many rows")
    p.add_argument("--ood", type=Path, help="out-of-distribution CSV to score (evaluation only)")
    p.add_argument("--logdir", type=Path, help="write TensorBoard logs here")
    p.add_argument("--publish", action="store_true", help="make the bundle current if it passes the quality gate")
    p.add_argument("--min-accuracy", type=float, default=d.min_accuracy, help="gate: minimum test accuracy")
    p.add_argument("--min-macro-f1", type=float, default=d.min_macro_f1, help="gate: minimum test macro-F1")
    p.add_argument(
        "--max-regression",
        type=float,
        default=d.max_regression,
        help="gate: largest allowed drop in test accuracy/macro-F1 against the current bundle",
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        from training.train import TrainConfig, train
    except ImportError as exc:
        print(f"categorizer train: {exc}. Install the training extra: pip install -e '.[train]'", file=sys.stderr)
        return 2
    from training.data import DataError

    cfg = TrainConfig(
        data=args.data,
        models_dir=args.models,
        version=args.version,
        epochs=args.epochs,
        seq_len=args.seq_len,
        vocab_size=args.vocab_size,
        min_count=args.min_count,
        embed_dim=args.embed_dim,
        lstm_units=args.lstm_units,
        dense_units=args.dense_units,
        dropout=args.dropout,
        embed_dropout=args.embed_dropout,
        pooling=args.pooling,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        patience=args.patience,
        seed=args.seed,
        max_rows=args.max_rows,
        ood=args.ood,
        logdir=args.logdir,
        publish=args.publish,
        min_accuracy=args.min_accuracy,
        min_macro_f1=args.min_macro_f1,
        max_regression=args.max_regression,
        verbose=0 if args.quiet else 2,
    )
    try:
        result = train(cfg)
    except (DataError, FileNotFoundError, FileExistsError) as exc:
        print(f"categorizer train: {exc}", file=sys.stderr)
        return 2
    ev = result.metrics["evaluation"]
    summary = {
        "bundle": str(result.bundle_dir),
        "version": result.metrics["version"],
        "wall_seconds": result.metrics["training"]["wall_seconds"],
        **{f"{m}_{s}_accuracy": round(ev[m][s]["accuracy"], 4) for m in ("lstm", "svm") for s in ev[m]},
        "lstm_test_macro_f1": round(ev["lstm"]["test"]["macro_f1"], 4),
        "published": result.published,
    }
    print(json.dumps(summary, indent=2))
    if args.publish and not result.published:
        print("categorizer train: not published, the quality gate failed:", file=sys.stderr)
        for reason in result.gate_failures:
            print(f"  - {reason}", file=sys.stderr)
        return 1
    return 0
