"""The quality gate: may a freshly trained bundle become ``current``?

- **Minimums**: LSTM accuracy and macro-F1 on the new bundle's own test split at or above
  ``min_accuracy`` / ``min_macro_f1``.
- **No regression** against the current bundle, by more than ``max_regression``. A fair
  comparison needs texts that *neither* model has learned from: the current bundle scored on
  texts it trained on would look better than it is (on the shipped model: 99.3 % on its training
  split against 96.6 % on its test split), and a new split of the same data, or a refreshed file,
  puts many of them in the new test split. So every bundle records the digests of its training
  and validation texts (``seen_texts.json``), and the gate scores both models on the new test
  texts the current bundle has not seen (``basis: unseen_by_both``). When the current bundle
  records no digests, or fewer than ``MIN_UNSEEN`` test texts are new to it, the gate falls back
  to the current bundle's recorded test scores (``basis: recorded_scores``, measured on its own
  split).

A current bundle that cannot be loaded or scored is not compared against (a broken ``current``
is what a new bundle replaces); the verdict says why (``skipped``). The verdict is stored in the
bundle's ``metrics.json`` and ``report.md`` whether or not the bundle is published.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from training.evaluate import scores
from training.text import normalize_key

SCORES = ("accuracy", "macro_f1")
NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1"}
SEEN_FILE = "seen_texts.json"
#: Fewest unseen test texts for a head-to-head comparison (below it, scores are too noisy).
MIN_UNSEEN = 100


def text_digest(text: str) -> str:
    """64-bit digest of a text's normalized key (the de-duplication key)."""
    return hashlib.sha256(normalize_key(text).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def write_seen(bundle_dir: Path, texts: list[str]) -> None:
    """Record the digests of the texts a bundle learned from (training and validation)."""
    digests = sorted({text_digest(t) for t in texts})
    doc = {"digest": "sha256(normalize_key(text))[:16]", "count": len(digests), "digests": digests}
    (Path(bundle_dir) / SEEN_FILE).write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")


def read_seen(bundle_dir: Path) -> set[str] | None:
    """The digests a bundle recorded, or None (bundles trained before they were recorded)."""
    try:
        doc = json.loads((Path(bundle_dir) / SEEN_FILE).read_text(encoding="utf-8"))
        return {d for d in doc["digests"] if isinstance(d, str)}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _labels_of(bundle, texts: list[str], batch: int = 512) -> list[str]:
    out: list[str] = []
    for start in range(0, len(texts), batch):
        probs = bundle.predict_proba(texts[start : start + batch])
        out.extend(bundle.labels[k] for k in probs.argmax(axis=1))
    return out


def _compare_with_current(
    models_dir: Path, texts: list[str], truth: list[str], predicted: list[str], labels: list[str], own: dict
) -> dict:
    """``{"version", "basis", "n", "current", "new"}`` (the two models' scores on one basis), or
    ``{"version", "skipped"}``, or ``{}`` when there is no current bundle."""
    from training.bundle import BundleError, load_bundle, read_current

    try:
        current = read_current(models_dir)
    except BundleError:
        return {}  # no current bundle: nothing to regress against
    out: dict = {"version": current}
    try:
        bundle = load_bundle(models_dir / current, threads=0)
        if list(bundle.labels) != list(labels):
            out["skipped"] = f"the current bundle {current} has other labels: {bundle.labels}"
            return out
        seen = read_seen(bundle.path)
        unseen = [] if seen is None else [k for k, t in enumerate(texts) if text_digest(t) not in seen]
        if len(unseen) >= MIN_UNSEEN:
            sub_truth = [truth[k] for k in unseen]
            theirs = _labels_of(bundle, [texts[k] for k in unseen])
            mine = [predicted[k] for k in unseen]
            out.update(basis="unseen_by_both", n=len(unseen))
            out["current"] = {k: scores(sub_truth, theirs, labels)[k] for k in SCORES}
            out["new"] = {k: scores(sub_truth, mine, labels)[k] for k in SCORES}
            return out
        recorded = bundle.metrics["evaluation"]["lstm"]["test"]
        out.update(basis="recorded_scores", n=recorded.get("n"))
        out["current"] = {k: float(recorded[k]) for k in SCORES}
        out["new"] = {k: own[k] for k in SCORES}  # the new bundle's scores on its whole test split
        out["why"] = (
            "the current bundle records no training texts"
            if seen is None
            else f"only {len(unseen)} test texts are new to the current bundle (fewer than {MIN_UNSEEN})"
        )
    except Exception as exc:  # a broken current bundle must not cost the trained one
        out = {"version": current, "skipped": f"the current bundle {current} cannot be scored: {exc}"}
    return out


def quality_gate(
    test_texts: list[str],
    test_labels: list[str],
    test_predicted: list[str],
    labels: list[str],
    *,
    models_dir: Path,
    min_accuracy: float = 0.0,
    min_macro_f1: float = 0.0,
    max_regression: float = 0.005,
) -> dict:
    """The verdict: ``passed``, ``failures`` (reasons, empty when it passes), each of the
    ``checks`` with its value and threshold, and ``compared_with`` (see ``_compare_with_current``)."""
    checks, failures = [], []

    def check(name: str, value: float, threshold: float, reason: str) -> None:
        ok = value >= threshold
        checks.append({"check": name, "value": round(value, 6), "threshold": round(threshold, 6), "passed": ok})
        if not ok:
            failures.append(reason)

    own = scores(test_labels, test_predicted, labels)
    acc, f1 = own["accuracy"], own["macro_f1"]
    check("min_accuracy", acc, min_accuracy, f"test accuracy {acc:.4f} is below the minimum {min_accuracy:.4f}")
    check("min_macro_f1", f1, min_macro_f1, f"test macro-F1 {f1:.4f} is below the minimum {min_macro_f1:.4f}")

    current = _compare_with_current(Path(models_dir), test_texts, test_labels, test_predicted, labels, own)
    if "current" in current:
        where = (
            f"on the {current['n']} test texts neither model has seen"
            if current["basis"] == "unseen_by_both"
            else "against its recorded test scores"
        )
        for key in SCORES:
            mine, theirs = current["new"][key], current["current"][key]
            check(
                f"no_regression_{key}",
                mine,
                theirs - max_regression,
                f"test {NAMES[key]} {mine:.4f} regresses from current {current['version']} ({theirs:.4f}) "
                f"by more than {max_regression:.4f}, {where}",
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
    elif current["basis"] == "unseen_by_both":
        lines += [
            f"Compared with `{current['version']}` on the {current['n']} test texts that neither model has "
            f"seen: current {current['current']['accuracy']:.4f} accuracy, this bundle "
            f"{current['new']['accuracy']:.4f}.",
            "",
        ]
    else:
        lines += [f"Compared with `{current['version']}`'s recorded test scores ({current['why']}).", ""]
    lines += ["| check | value | threshold | passed |", "|---|---|---|---|"]
    for c in gate["checks"]:
        lines.append(f"| {c['check']} | {c['value']:.4f} | {c['threshold']:.4f} | {'yes' if c['passed'] else 'no'} |")
    return [*lines, ""]
