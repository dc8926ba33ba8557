"""Reading and cleaning the e-commerce text dataset (``category,text`` CSV).

Accepts the file as published (no header, RFC 4180 quoting, quoted newlines, CRLF or LF)
and files with a ``category,text`` or ``label,text`` header row.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from training import LABELS
from training.bundle import sha256_file
from training.text import clean_text

HEADER_NAMES = {"category", "label"}


class DataError(ValueError):
    """The dataset file cannot be used; the message names the line."""


@dataclass
class Dataset:
    texts: list[str]
    labels: list[str]
    sha256: str
    stats: dict = field(default_factory=dict)


def load_dataset(path: str | Path, labels: tuple[str, ...] = LABELS) -> Dataset:
    """Read, validate and clean a dataset CSV.

    Cleaning decodes HTML entities and collapses whitespace; rows whose text is then empty
    are dropped and counted. An unknown label raises ``DataError`` naming the line.
    """
    path = Path(path)
    known = set(labels)
    texts: list[str] = []
    out_labels: list[str] = []
    rows = empty = 0
    first = True
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        for record in reader:
            line = reader.line_num  # physical line where this record ends
            if not record or record == [""]:
                continue
            is_header = first and record[0].strip().lower() in HEADER_NAMES
            first = False
            if is_header:
                continue
            if len(record) < 2:
                raise DataError(f"{path}:{line}: expected 2 columns 'category,text', got {len(record)}")
            label = record[0].strip()
            text = ",".join(record[1:]) if len(record) > 2 else record[1]
            rows += 1
            if label not in known:
                raise DataError(f"{path}:{line}: unknown label {label!r}; expected one of {', '.join(sorted(known))}")
            text = clean_text(text)
            if not text:
                empty += 1
                continue
            texts.append(text)
            out_labels.append(label)
    if not texts:
        raise DataError(f"{path}: no usable rows")
    stats = {
        "rows_read": rows,
        "empty_text_dropped": empty,
        "rows_after_cleaning": len(texts),
        "per_label": {lb: out_labels.count(lb) for lb in labels},
    }
    return Dataset(texts=texts, labels=out_labels, sha256=sha256_file(path), stats=stats)


def load_ood(path: str | Path, labels: tuple[str, ...] = LABELS) -> Dataset:
    """Read the out-of-distribution set (header ``category,text[,source]``)."""
    path = Path(path)
    texts, out_labels = [], []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"category", "text"} <= set(reader.fieldnames):
            raise DataError(f"{path}: the OOD file needs a header with 'category' and 'text' columns")
        for row in reader:
            label = (row["category"] or "").strip()
            if label not in labels:
                raise DataError(f"{path}:{reader.line_num}: unknown label {label!r}")
            text = clean_text(row["text"] or "")
            if text:
                texts.append(text)
                out_labels.append(label)
    return Dataset(texts=texts, labels=out_labels, sha256=sha256_file(path), stats={"rows": len(texts)})
