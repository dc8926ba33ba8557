"""``categorizer models list|show|rollback``: inspect the model directory and roll back (TF-free)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list, show and roll back model bundles",
        description="Inspect the bundles of the model directory and move the 'current' pointer back. "
        "Workers hot-reload the new current bundle between batches (docs/models.md).",
    )
    p.add_argument("--models", type=Path, help="model directory (default: CATEGORIZER_MODEL_DIR or ./saved_models)")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    ls = msub.add_parser("list", help="every bundle with its test scores; * marks the current one")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=run_list)

    show = msub.add_parser("show", help="one bundle's summary as JSON (default: the current one)")
    show.add_argument("version", nargs="?", help="bundle version (default: current)")
    show.set_defaults(func=run_show)

    rb = msub.add_parser(
        "rollback",
        help="make a previous version current (workers hot-reload it)",
        description="Without VERSION: the version published before the current one (the publication "
        "history in <models>/history.json; repeated rollbacks walk further back). With VERSION: that bundle. "
        "The bundle is verified (checksums) before the pointer moves.",
    )
    rb.add_argument("version", nargs="?", help="bundle version to make current")
    rb.set_defaults(func=run_rollback)


def _models_dir(args: argparse.Namespace) -> Path:
    from training.bundle import default_models_dir

    return args.models or default_models_dir()


def _fmt(score: dict | None, key: str) -> str:
    return f"{score[key]:.4f}" if score and key in score else "-"


def run_list(args: argparse.Namespace) -> int:
    from training.registry import RegistryError, list_summaries

    try:
        current, rows = list_summaries(_models_dir(args))
    except RegistryError as exc:
        print(f"categorizer models: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"current": current, "models": rows}, indent=2))
        return 0
    print(f"  {'VERSION':<28} {'TRAINED_AT':<26} {'TEST_ACC':>8} {'TEST_F1':>8} {'OOD_ACC':>8}  DATA_SHA256")
    for r in rows:
        mark = "*" if r["current"] else " "
        sha = (r["data"]["sha256"] or "-")[:12]
        print(
            f"{mark} {r['version']:<28} {r['trained_at'] or '-':<26} {_fmt(r['test'], 'accuracy'):>8} "
            f"{_fmt(r['test'], 'macro_f1'):>8} {_fmt(r['ood'], 'accuracy'):>8}  {sha}"
        )
    if current is None:
        print("(no current version)", file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from training.bundle import BundleError, read_current
    from training.registry import summary

    models = _models_dir(args)
    try:
        current = read_current(models)
    except BundleError as exc:
        if not args.version:
            print(f"categorizer models: {exc}", file=sys.stderr)
            return 2
        current = None
    version = args.version or current
    if not (models / version).is_dir():
        print(f"categorizer models: no bundle {version!r} in {models}", file=sys.stderr)
        return 2
    print(json.dumps(summary(models, version, current), indent=2))
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from training.registry import RegistryError, rollback

    try:
        before, after = rollback(_models_dir(args), args.version)
    except RegistryError as exc:
        print(f"categorizer models rollback: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"previous": before, "current": after}))
    print(f"current: {before} -> {after} (workers switch within CATEGORIZER_MODEL_CHECK_INTERVAL)", file=sys.stderr)
    return 0
