"""The ``categorizer`` console script: one name, a subcommand per task, ``--help`` everywhere.

Each subcommand module registers itself through an ``add_parser(subparsers)`` function and
imports its heavy dependencies lazily, so that ``categorizer predict`` never loads
TensorFlow and ``categorizer train`` is the only command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module path of every subcommand, in the order --help lists them
SUBCOMMANDS = (
    "training.cli_train",
    "training.cli_predict",
    "training.cli_models",
    "web.cli_serve",
    "web.cli_submit",
    "web.cli_catalog",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="categorizer",
        description="Asynchronous e-commerce product categorizer (Electronics, Household, Books, "
        "Clothing & Accessories).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
