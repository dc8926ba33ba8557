"""The catalog result caches' helpers (worker.cache): exact key normalization, exact float32 packing."""

from __future__ import annotations

import csv
import re

import pytest

from tests.paths import DATASET
from training.text import normalize_key
from worker.cache import (
    LocalCache,
    fast_normalize_key,
    pack_probabilities,
    prediction_of,
    unpack_probabilities,
)


def test_str_split_and_regex_whitespace_agree_on_every_code_point():
    ws = re.compile(r"\s")
    for cp in range(0x110000):
        c = chr(cp)
        assert (ws.fullmatch(c) is not None) == c.isspace(), hex(cp)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  a  b ",
        "A&amp;B\u00a0 c\u2003d\n\te",
        "&lt;b&gt;  Bold &#39;x&#39;",
        "\u1680x\u3000Y\x1c\x1fz",
        "Ünïcode ẞ",
    ],
)
def test_fast_normalize_key_is_normalize_key(text):
    assert fast_normalize_key(text) == normalize_key(text)


def test_fast_normalize_key_on_the_real_sample():
    if not DATASET.exists():
        pytest.skip(f"no dataset at {DATASET}")
    csv.field_size_limit(1 << 30)
    with open(DATASET, encoding="utf-8", newline="") as fh:
        texts = [r[1] for r in csv.reader(fh) if len(r) >= 2]
    assert all(fast_normalize_key(t) == normalize_key(t) for t in texts)


def test_probabilities_pack_exactly_and_predictions_match_bundle_predict():
    import numpy as np

    probs32 = np.array([[0.1, 0.6, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25], [1e-8, 0.0, 0.99999, 1e-5]], np.float32)
    rows = probs32.tolist()  # what Bundle.predict returns: float32 values as Python floats
    assert unpack_probabilities(pack_probabilities(rows), 4) == rows
    labels = ["a", "b", "c", "d"]
    for row, k in zip(rows, probs32.argmax(axis=1).tolist(), strict=True):
        assert prediction_of(row, labels) == (labels[k], row[k])


def test_local_cache_is_bounded_and_per_version():
    cache = LocalCache(max_entries=4)
    cache.put_many("v1", {bytes([i]): (float(i),) for i in range(5)})
    entries = cache.for_version("v1")
    assert len(entries) <= 4 and bytes([4]) in entries  # the newest entries are kept
    assert cache.for_version("v2") == {}  # another version starts empty
    LocalCache(max_entries=0).put_many("v1", {b"x": (1.0,)})  # 0 = off, nothing kept
