"""Helpers shared by the benchmark scripts: real texts and timing."""

from __future__ import annotations

import csv
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("CATEGORIZER_SHARED_DATA", REPO.parent / "shared" / "data")) / "ecommerce_sample.csv"


def real_texts(path: Path = DEFAULT_DATA, unique: bool = True) -> list[str]:
    """Texts of a ``category,text`` CSV (no header), in file order, optionally de-duplicated."""
    from training.text import normalize_key

    seen: set[str] = set()
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh):
            if len(row) < 2:
                continue
            key = normalize_key(row[1])
            if unique and key in seen:
                continue
            seen.add(key)
            out.append(row[1])
    return out


def best_rate(fn: Callable[[], int], seconds: float = 2.0, repeats: int = 3) -> float:
    """Items per second of ``fn`` (which returns how many items it did): best of ``repeats`` runs."""
    fn()  # warm-up
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / repeats:
            n += fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def machine() -> dict:
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
