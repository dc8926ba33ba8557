from collections import Counter

import pytest

from tests.paths import DATASET
from training.data import load_dataset
from training.split import deduplicate, split_dataset
from training.text import normalize_key


def synthetic(n_per_label: int = 60):
    texts, labels = [], []
    for label in ("Books", "Household", "Electronics", "Clothing & Accessories"):
        for i in range(n_per_label):
            texts.append(f"{label} item number {i}")
            labels.append(label)
            if i % 3 == 0:  # duplicates that differ only in case and spacing
                texts.append(f"  {label.upper()}   item number {i} ")
                labels.append(label)
    return texts, labels


def test_deduplicate_on_normalized_text():
    texts, labels, stats = deduplicate(["A  b", "a b", "c"], ["Books", "Books", "Household"])
    assert texts == ["A  b", "c"] and stats["duplicates_removed"] == 1


def test_conflicting_labels_are_dropped():
    texts, labels, stats = deduplicate(["a", "A", "b"], ["Books", "Household", "Books"])
    assert texts == ["b"] and stats["conflicting_labels_dropped"] == 1


def _keys(part):
    return {normalize_key(t) for t in part[0]}


def test_no_text_in_two_parts_and_stratified():
    texts, labels = synthetic()
    s = split_dataset(texts, labels, seed=7)
    tr, va, te = _keys(s.train), _keys(s.val), _keys(s.test)
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert len(tr) + len(va) + len(te) == s.stats["unique_texts"] == 240
    for part in (s.val, s.test):
        counts = Counter(part[1])
        assert max(counts.values()) - min(counts.values()) <= 1  # equal classes stay equal


def test_split_is_deterministic():
    texts, labels = synthetic()
    assert split_dataset(texts, labels, seed=3).test == split_dataset(texts, labels, seed=3).test
    assert split_dataset(texts, labels, seed=3).test != split_dataset(texts, labels, seed=4).test


@pytest.mark.skipif(not DATASET.exists(), reason="shared dataset not present")
def test_real_data_split_has_no_overlap():
    d = load_dataset(DATASET)
    s = split_dataset(d.texts, d.labels)
    tr, va, te = _keys(s.train), _keys(s.val), _keys(s.test)
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert s.stats["unique_texts"] == len(tr) + len(va) + len(te)
