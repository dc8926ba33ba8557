"""The quality gate: may a freshly trained bundle become ``current``?

Every check runs on the new bundle's own test split:

- **minimums**: LSTM test accuracy and macro-F1 at or above ``min_accuracy`` / ``min_macro_f1``;
- **no regression**: the current bundle is loaded the way a worker loads it (ONNX Runtime, no
  TensorFlow) and scored on the *same* test texts. The new bundle may trail it by at most
  ``max_regression``. Comparing head to head, rather than with the scores recorded in the
  current bundle, keeps a change of dataset or split from making either model look better than
  it is. When the current bundle was trained on other data or another split, some of these test
  texts may have been in its training data: that can only flatter it, so the gate errs on the
  strict side, and the verdict says so (``same_split: false``).

A current bundle that cannot be loaded is not compared against (a broken ``current`` is exactly
what a new bundle replaces); the verdict records why the check was skipped. The verdict is
stored in the bundle's ``metrics.json`` and ``report.md`` whether or not it is published.
"""

from __future__ import annotations

from pathlib import Path

from training.evaluate import scores

SCORES = ("accuracy", "macro_f1")
NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1"}


def _current_on_split(models_dir: Path, texts: list[str], labels_true: list[str], labels: list[str]) -> dict:
    """``{"version", "scores" | "skipped", "same_split"}`` for the current bundle, or ``{}`` if none."""
    from training.bundle import BundleError, load_bundle, read_current

    try:
        current = read_current(models_dir)
    except BundleError:
        return {}  # no current bundle: nothing to regress against
    out: dict = {"version": current}
    try:
        bundle = load_bundle(models_dir / current, threads=0)
    except (BundleError, OSError) as exc:
        out["skipped"] = f"the current bundle {current} does not load: {exc}"
        return out
    if list(bundle.labels) != list(labels):
        out["skipped"] = f"the current bundle {current} has other labels: {bundle.labels}"
        return out
    probs = bundle.predict_proba(texts)
    pred = [bundle.labels[k] for k in probs.argmax(axis=1)]
    out["scores"] = {k: scores(labels_true, pred, labels)[k] for k in SCORES}
    out["trained_on"] = {
        "data_sha256": (bundle.metrics.get("data") or {}).get("sha256"),
        "split": bundle.metrics.get("split"),
    }
    return out


def quality_gate(
    new_scores: dict,
    test_texts: list[str],
    test_labels: list[str],
    labels: list[str],
    *,
    data_sha256: str,
    split: dict,
    models_dir: Path,
    min_accuracy: float = 0.0,
    min_macro_f1: float = 0.0,
    max_regression: float = 0.005,
) -> dict:
    """The verdict: ``passed``, ``failures`` (reasons, empty when it passes), each ``checks``
    entry, and ``compared_with`` (the current bundle, scored on the same test texts)."""
    checks, failures = [], []

    def check(name: str, value: float, threshold: float, reason: str) -> None:
        ok = value >= threshold
        checks.append({"check": name, "value": round(value, 6), "threshold": round(threshold, 6), "passed": ok})
        if not ok:
            failures.append(reason)

    acc, f1 = new_scores["accuracy"], new_scores["macro_f1"]
    check("min_accuracy", acc, min_accuracy, f"test accuracy {acc:.4f} is below the minimum {min_accuracy:.4f}")
    check("min_macro_f1", f1, min_macro_f1, f"test macro-F1 {f1:.4f} is below the minimum {min_macro_f1:.4f}")

    current = _current_on_split(Path(models_dir), test_texts, test_labels, labels)
    if "scores" in current:
        trained_on = current.pop("trained_on")
        current["same_split"] = trained_on == {"data_sha256": data_sha256, "split": split}
        for key in SCORES:
            mine, theirs = new_scores[key], current["scores"][key]
            check(
                f"no_regression_{key}",
                mine,
                theirs - max_regression,
                f"test {NAMES[key]} {mine:.4f} regresses from current {current['version']} ({theirs:.4f} on the same "
                f"test texts) by more than {max_regression:.4f}",
            )
    return {
        "passed": not failures,
        "failures": failures,
        "checks": checks,
        "compared_with": current or None,
        "settings": {"min_accuracy": min_accuracy, "min_macro_f1": min_macro_f1, "max_regression": max_regression},
    }


def render_gate(gate: dict | None) -> list[str]:
    """Markdown lines for ``report.md``."""
    if not gate:
        return []
    lines = ["## Quality gate", "", f"**{'passed' if gate['passed'] else 'failed'}**", ""]
    current = gate.get("compared_with")
    if current is None:
        lines += ["No current bundle to compare against: only the minimums apply.", ""]
    elif "skipped" in current:
        lines += [f"No-regression check skipped: {current['skipped']}.", ""]
    else:
        same = "same data and split" if current.get("same_split") else "other data or split: may flatter it"
        lines += [f"Compared with `{current['version']}`, scored on this bundle's test texts ({same}).", ""]
    lines += ["| check | value | threshold | passed |", "|---|---|---|---|"]
    for c in gate["checks"]:
        lines.append(f"| {c['check']} | {c['value']:.4f} | {c['threshold']:.4f} | {'yes' if c['passed'] else 'no'} |")
    return [*lines, ""]
