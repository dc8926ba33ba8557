"""``categorizer predict``: categorize texts in-process with a bundle (no service, no TensorFlow)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="categorize texts in this process with a model bundle",
        description="Categorize product texts with a model bundle, in this process (no Redis, no "
        "workers). Prints one JSON object per text.",
    )
    p.add_argument("texts", nargs="*", help="product texts (title and description)")
    p.add_argument("--file", type=Path, help="read texts from a file, one per line ('-' for stdin)")
    p.add_argument("--models", type=Path, help="model directory (default: CATEGORIZER_MODEL_DIR or ./saved_models)")
    p.add_argument("--version", dest="model_version", help="bundle version (default: current)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = all cores)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.bundle import BundleError, default_models_dir, load_bundle, read_current

    texts = list(args.texts)
    if args.file:
        fh = sys.stdin if str(args.file) == "-" else open(args.file, encoding="utf-8", errors="replace")
        with fh:
            texts.extend(line.rstrip("\n") for line in fh if line.strip())
    if not texts:
        print("categorizer predict: give at least one text, or --file", file=sys.stderr)
        return 2
    models = args.models or default_models_dir()
    try:
        version = args.model_version or read_current(models)
        bundle = load_bundle(models / version, threads=args.threads)
    except BundleError as exc:
        print(f"categorizer predict: {exc}", file=sys.stderr)
        return 1
    for text, result in zip(texts, bundle.predict(texts), strict=True):
        result = {"text": text[:80], **result, "model_version": bundle.version}
        print(json.dumps(result, ensure_ascii=False))
    return 0
