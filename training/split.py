"""De-duplication and the honest, stratified, seeded train/validation/test split."""

from __future__ import annotations

from dataclasses import dataclass

from training.text import normalize_key


@dataclass
class Split:
    train: tuple[list[str], list[str]]
    val: tuple[list[str], list[str]]
    test: tuple[list[str], list[str]]
    stats: dict


def deduplicate(texts: list[str], labels: list[str]) -> tuple[list[str], list[str], dict]:
    """Keep the first row of each normalized text.

    The same normalized text with different labels is ambiguous: all its rows are dropped
    and counted, so that no label noise leaks across the split.
    """
    first: dict[str, int] = {}
    conflicting: set[str] = set()
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        key = normalize_key(text)
        if key in first:
            if labels[first[key]] != label:
                conflicting.add(key)
        else:
            first[key] = i
    keep = [i for key, i in first.items() if key not in conflicting]
    keep.sort()
    stats = {
        "rows": len(texts),
        "unique_texts": len(first),
        "duplicates_removed": len(texts) - len(first),
        "conflicting_labels_dropped": len(conflicting),
        "rows_after_dedup": len(keep),
    }
    return [texts[i] for i in keep], [labels[i] for i in keep], stats


def split_dataset(
    texts: list[str], labels: list[str], val_size: float = 0.15, test_size: float = 0.15, seed: int = 42
) -> Split:
    """De-duplicate, then split stratified by label with a fixed seed.

    Because duplicates are removed first, no normalized text can appear in two parts.
    """
    from sklearn.model_selection import train_test_split

    texts, labels, stats = deduplicate(texts, labels)
    x_rest, x_test, y_rest, y_test = train_test_split(
        texts, labels, test_size=test_size, stratify=labels, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_size / (1 - test_size), stratify=y_rest, random_state=seed
    )
    stats.update({"train": len(x_train), "val": len(x_val), "test": len(x_test), "seed": seed})
    return Split((x_train, y_train), (x_val, y_val), (x_test, y_test), stats)
