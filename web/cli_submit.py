"""``categorizer submit``: send products to a running service and print the results."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="categorize products with a running service (HTTP)",
        description="Submit products to a running categorizer service as one job, wait for it "
        "(long-polling) and print one JSON object per product, in input order. A --file holds one "
        'product per line: a JSON object {"id": ..., "text": ...} (JSON lines) or plain text.',
    )
    p.add_argument("texts", nargs="*", help="product texts (title and description)")
    p.add_argument("--file", type=Path, help="products, one per line: JSON lines or plain text ('-' = stdin)")
    p.add_argument(
        "--url",
        default=os.environ.get("CATEGORIZER_URL", "http://127.0.0.1:8000"),
        help="service URL (default: CATEGORIZER_URL or http://127.0.0.1:8000)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the results (default 120)")
    p.add_argument("--idempotency-key", help="Idempotency-Key for the POST (default: a random one)")
    p.set_defaults(func=run)


def read_products(lines) -> list[dict]:
    """One product per non-blank line: a JSON object with ``text`` (and ``id``), else plain text."""
    products = []
    for line in lines:
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                products.append(obj)
                continue
        products.append({"text": line})
    return products


def run(args: argparse.Namespace) -> int:
    import requests

    from web.client import Client, JobFailed, ProblemError

    products = [{"text": t} for t in args.texts]
    if args.file:
        if str(args.file) == "-":
            products.extend(read_products(sys.stdin))
        else:
            with open(args.file, encoding="utf-8", errors="replace") as fh:
                products.extend(read_products(fh))
    if not products:
        print("categorizer submit: give at least one text, or --file", file=sys.stderr)
        return 2
    client = Client(args.url)
    try:
        job = client.submit(products, idempotency_key=args.idempotency_key)
        print(f"job {job.id} {job.status}", file=sys.stderr)
        results = job.wait(args.timeout).results()
    except ProblemError as exc:
        print(f"categorizer submit: {exc}", file=sys.stderr)
        for err in exc.errors:
            where = err.get("pointer") or err.get("parameter") or err.get("header") or ""
            print(f"  {where}: {err.get('detail')}", file=sys.stderr)
        return 1
    except (JobFailed, TimeoutError) as exc:
        print(f"categorizer submit: {exc}", file=sys.stderr)
        return 1
    except requests.RequestException as exc:
        print(f"categorizer submit: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    for product, result in zip(products, results, strict=True):
        out = {"id": result.get("id"), "text": str(product.get("text", ""))[:80], **result}
        print(json.dumps(out, ensure_ascii=False))
    return 0
