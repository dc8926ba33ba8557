"""Low-confidence review: results whose confidence is below ``REVIEW_THRESHOLD`` carry
``needs_review: true`` (``false`` otherwise).

Applied where results are *rendered* (the web tier), not where they are stored: the threshold
is an operator's decision that can change at any time (``CATEGORIZER_REVIEW_THRESHOLD``) and
then holds for every result read afterwards, old ones included, without touching the workers
or the stored records. The default (0.9) comes from the validation coverage table of the
shipped model (``saved_models/<version>/metrics.json``, ``evaluation.coverage.val``); see
docs/operations.md.
"""

from __future__ import annotations

import json

DEFAULT_REVIEW_THRESHOLD = 0.9


def needs_review(confidence: float, threshold: float) -> bool:
    """True when ``confidence`` (the top probability) is below ``threshold``."""
    return float(confidence) < float(threshold)


def mark_results(results: list[dict], threshold: float) -> list[dict]:
    """Add ``needs_review`` to each result (in place) and return the list."""
    for r in results:
        if "confidence" in r:
            r["needs_review"] = needs_review(r["confidence"], threshold)
    return results


def mark_results_json(raw: str, threshold: float) -> str:
    """``mark_results`` on a JSON array as stored by the workers; returns JSON."""
    if not raw or raw == "[]":
        return raw
    return json.dumps(mark_results(json.loads(raw), threshold), separators=(",", ":"))
