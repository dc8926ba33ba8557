"""``categorizer submit-catalog``: upload a catalog file, follow it with a progress bar, save the results."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit-catalog",
        help="categorize a whole catalog file (CSV or JSON Lines) with a running service",
        description="Stream a catalog (CSV with a header and a 'text' column, or 'title' + 'description'; "
        'or JSON Lines {"id": ..., "text": ...}) to a running service, show its progress (rows done, '
        "rows/s, ETA) and write the results, in input order, to --output. Exits 1 with the service's "
        "explanation if it refuses the file.",
    )
    p.add_argument("file", type=Path, help="the catalog file")
    p.add_argument("-o", "--output", type=Path, required=True, help="where to write the results")
    p.add_argument(
        "--format",
        choices=["csv", "jsonl"],
        help="format of the results (default: from the --output extension, else csv)",
    )
    p.add_argument("--input-format", choices=["csv", "jsonl"], help="format of the file (default: sniffed)")
    p.add_argument("--text-column", help="column (CSV) or key (JSONL) of the text (default 'text')")
    p.add_argument("--title-column", help="column of the title, joined with --description-column")
    p.add_argument("--description-column", help="column of the description (default 'description')")
    p.add_argument("--id-column", help="column of the product id (default 'id')")
    p.add_argument(
        "--url",
        default=os.environ.get("CATEGORIZER_URL", "http://127.0.0.1:8000"),
        help="service URL (default: CATEGORIZER_URL or http://127.0.0.1:8000)",
    )
    p.add_argument("--poll", type=float, default=1.0, help="seconds between progress reads (default 1)")
    p.add_argument("--timeout", type=float, default=24 * 3600, help="give up after this many seconds")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


class _ProgressFile:
    """A read-only file whose reads advance a progress bar; requests streams it (its length is known)."""

    def __init__(self, fh, size: int, bar):
        self.fh, self.size, self.bar = fh, size, bar

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        block = self.fh.read(n)
        if self.bar is not None:
            self.bar.update(len(block))
        return block


def _problem_message(resp) -> str:
    try:
        problem = resp.json()
    except ValueError:
        return f"{resp.status_code} {resp.reason}: {resp.text[:300]}"
    return f"{resp.status_code} {problem.get('title', resp.reason)}: {problem.get('detail', '')}".rstrip(": ")


def _count_rows(path: Path, fmt: str) -> int:
    """Result rows in a downloaded results file (CSV: records after the header; JSONL: lines)."""
    with open(path, encoding="utf-8", newline="") as fh:
        if fmt == "jsonl":
            return sum(1 for line in fh if line.strip())
        return max(sum(1 for _ in csv.reader(fh)) - 1, 0)  # ids and texts may hold quoted newlines


def run(args: argparse.Namespace) -> int:
    import requests
    from tqdm import tqdm

    from web.client import api_session

    prog = "categorizer submit-catalog"
    fmt = args.format or ("jsonl" if args.output.suffix.lower() in (".jsonl", ".ndjson") else "csv")
    if not args.file.is_file():
        print(f"{prog}: no file {args.file}", file=sys.stderr)
        return 2
    params = {
        k: v
        for k, v in {
            "format": args.input_format,
            "text_column": args.text_column,
            "title_column": args.title_column,
            "description_column": args.description_column,
            "id_column": args.id_column,
        }.items()
        if v
    }
    base = args.url.rstrip("/")
    session = api_session()  # sends CATEGORIZER_API_KEY when set
    size = args.file.stat().st_size
    try:
        with open(args.file, "rb") as fh:
            bar = None if args.quiet else tqdm(total=size, unit="B", unit_scale=True, desc="upload", file=sys.stderr)
            try:
                resp = session.post(
                    base + "/v1/catalogs",
                    params=params,
                    data=_ProgressFile(fh, size, bar),
                    headers={"Content-Type": "application/octet-stream"},
                    timeout=(10, 3600),
                )
            finally:
                if bar is not None:
                    bar.close()
        if resp.status_code != 202:
            print(f"{prog}: the service refused {args.file}: {_problem_message(resp)}", file=sys.stderr)
            return 1
        catalog = resp.json()
        location = base + resp.headers.get("Location", f"/v1/catalogs/{catalog['catalog_id']}")
        print(f"catalog {catalog['catalog_id']}: {catalog['total']} rows", file=sys.stderr)
        deadline = time.monotonic() + args.timeout
        bar = None if args.quiet else tqdm(total=catalog["total"], unit="row", desc="categorize", file=sys.stderr)
        try:
            while True:
                resp = session.get(location, timeout=30)
                if resp.status_code != 200:
                    print(f"{prog}: {_problem_message(resp)}", file=sys.stderr)
                    return 1
                catalog = resp.json()
                if bar is not None:
                    bar.total = catalog["total"]
                    bar.update(catalog["done"] - bar.n)
                    bar.set_postfix(failed=catalog["failed_rows"], cached=catalog["cached_rows"], refresh=False)
                if catalog["status"] in ("succeeded", "failed", "cancelled"):
                    break
                if time.monotonic() > deadline:
                    print(f"{prog}: gave up after {args.timeout} s; catalog {location}", file=sys.stderr)
                    return 1
                time.sleep(args.poll)
        finally:
            if bar is not None:
                bar.close()
        if catalog["status"] != "succeeded":
            print(f"{prog}: catalog {catalog['status']}: {catalog.get('error', '')}", file=sys.stderr)
            return 1
        with session.get(location + "/results", params={"format": fmt}, stream=True, timeout=(10, 600)) as resp:
            if resp.status_code != 200:
                print(f"{prog}: {_problem_message(resp)}", file=sys.stderr)
                return 1
            tmp = args.output.with_name(args.output.name + ".part")
            try:
                with open(tmp, "wb") as out:
                    for block in resp.iter_content(1 << 16):
                        out.write(block)
            except requests.exceptions.ChunkedEncodingError as exc:  # the service broke the transfer off
                print(
                    f"{prog}: the download of the results broke off ({exc}); partial results in {tmp}", file=sys.stderr
                )
                return 1
        # a clean end is no proof of completeness: every row of the catalog must be there
        written = _count_rows(tmp, fmt)
        if written != catalog["total"]:
            print(
                f"{prog}: the results are incomplete: {written} of {catalog['total']} rows "
                f"(deleted or expired meanwhile?); partial results in {tmp}",
                file=sys.stderr,
            )
            return 1
        tmp.replace(args.output)
    except requests.RequestException as exc:
        print(f"{prog}: cannot talk to {args.url}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{catalog['done']} rows ({catalog['failed_rows']} failed, {catalog['cached_rows']} from cache) "
        f"-> {args.output}",
        file=sys.stderr,
    )
    return 0
