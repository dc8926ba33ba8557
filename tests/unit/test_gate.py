"""The quality gate (``training.gate``): minimums, and no regression against the current bundle,
scored on the test texts neither model has seen, or else against its recorded test scores.
Uses (a copy of) the shipped bundle as the current one, through ONNX Runtime only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.integration.samples import OBVIOUS
from training import LABELS, gate
from training.bundle import load_bundle, read_current, set_current, write_manifest
from training.gate import quality_gate, read_seen, render_gate, text_digest, write_seen
from training.registry import summary

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "saved_models"
SHIPPED = read_current(SHIPPED_DIR)
TEXTS = [text for _, text, _ in OBVIOUS]
TRUTH = [category for _, _, category in OBVIOUS]  # the shipped model gets all four right
RECORDED = json.loads((SHIPPED_DIR / SHIPPED / "metrics.json").read_text())["evaluation"]["lstm"]["test"]


@pytest.fixture
def models(tmp_path) -> Path:
    shutil.copytree(SHIPPED_DIR / SHIPPED, tmp_path / SHIPPED)
    set_current(tmp_path, SHIPPED)
    return tmp_path


def with_seen(models: Path, texts: list[str]) -> None:
    """Record ``texts`` as the current bundle's training texts (and keep its manifest valid)."""
    write_seen(models / SHIPPED, texts)
    write_manifest(models / SHIPPED)


def wrong(labels: list[str]) -> list[str]:
    return [LABELS[(LABELS.index(x) + 1) % len(LABELS)] for x in labels]


def run(models: Path, predicted: list[str], **kwargs) -> dict:
    return quality_gate(TEXTS, TRUTH, predicted, list(LABELS), models_dir=models, **kwargs)


@pytest.fixture
def head_to_head(models, monkeypatch) -> Path:
    """The current bundle has seen none of the four texts, and four are enough for a comparison."""
    monkeypatch.setattr(gate, "MIN_UNSEEN", 4)
    with_seen(models, ["some other product"])
    return models


def test_seen_digests_round_trip_and_normalize(tmp_path):
    write_seen(tmp_path, ["A  Phone&amp;Case", "a phone&case"])
    assert read_seen(tmp_path) == {text_digest("a phone&case")}
    assert read_seen(tmp_path / "missing") is None


def test_head_to_head_on_texts_neither_model_has_seen(head_to_head):
    verdict = run(head_to_head, list(TRUTH))
    assert verdict["passed"] and verdict["failures"] == []
    cmp = verdict["compared_with"]
    assert (cmp["version"], cmp["basis"], cmp["n"]) == (SHIPPED, "unseen_by_both", 4)
    assert cmp["current"] == cmp["new"] == {"accuracy": 1.0, "macro_f1": 1.0}
    assert [c["check"] for c in verdict["checks"]] == [
        "min_accuracy",
        "min_macro_f1",
        "no_regression_accuracy",
        "no_regression_macro_f1",
    ]


def test_a_regression_on_unseen_texts_fails_with_a_reason(head_to_head):
    verdict = run(head_to_head, [*TRUTH[:3], wrong(TRUTH[3:])[0]])  # 3 of 4 right: 0.75
    assert not verdict["passed"]
    assert verdict["failures"][0] == (
        f"test accuracy 0.7500 regresses from current {SHIPPED} (1.0000) by more than 0.0050, "
        "on the 4 test texts neither model has seen"
    )
    assert {c["check"] for c in verdict["checks"] if not c["passed"]} == {
        "no_regression_accuracy",
        "no_regression_macro_f1",
    }


def test_texts_the_current_bundle_trained_on_are_left_out(head_to_head):
    with_seen(head_to_head, TEXTS[:1])  # it has seen the first text: 3 remain, fewer than MIN_UNSEEN (4)
    verdict = run(head_to_head, list(TRUTH))
    cmp = verdict["compared_with"]
    assert cmp["basis"] == "recorded_scores" and "only 3 test texts are new" in cmp["why"]


def test_without_recorded_digests_the_recorded_scores_are_the_basis(models):
    # the shipped bundle predates seen_texts.json
    cmp = run(models, list(TRUTH))["compared_with"]
    assert cmp["basis"] == "recorded_scores" and cmp["why"] == "the current bundle records no training texts"
    assert cmp["current"] == {"accuracy": RECORDED["accuracy"], "macro_f1": RECORDED["macro_f1"]}
    failed = run(models, [*TRUTH[:3], wrong(TRUTH[3:])[0]])
    assert not failed["passed"] and "against its recorded test scores" in failed["failures"][0]


def test_minimums_apply_with_or_without_a_current_bundle(tmp_path):
    verdict = run(tmp_path, [*TRUTH[:3], wrong(TRUTH[3:])[0]], min_accuracy=0.8, min_macro_f1=0.9)
    assert verdict["compared_with"] is None
    assert [f.split(" is below")[0] for f in verdict["failures"]] == ["test accuracy 0.7500", "test macro-F1 0.6667"]
    assert run(tmp_path, list(TRUTH), min_accuracy=1.0)["passed"]


def test_a_current_bundle_that_does_not_load_is_skipped_and_the_verdict_says_why(models):
    (models / SHIPPED / "model.onnx").write_bytes(b"truncated")
    verdict = run(models, wrong(TRUTH))
    assert verdict["passed"]
    assert verdict["compared_with"]["version"] == SHIPPED
    assert "cannot be scored" in verdict["compared_with"]["skipped"]
    assert "No-regression check skipped" in "\n".join(render_gate(verdict))


def test_the_registry_summary_reports_the_recorded_verdict(head_to_head):
    bundle = head_to_head / SHIPPED
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert summary(head_to_head, SHIPPED, SHIPPED)["quality_gate"] is None  # trained before verdicts existed
    metrics["quality_gate"] = run(head_to_head, wrong(TRUTH))
    (bundle / "metrics.json").write_text(json.dumps(metrics))
    assert summary(head_to_head, SHIPPED, SHIPPED)["quality_gate"] == {
        "passed": False,
        "failures": metrics["quality_gate"]["failures"],
        "compared_with": SHIPPED,
        "basis": "unseen_by_both",
    }


def test_the_shipped_bundle_still_loads_with_a_seen_file(head_to_head):
    assert load_bundle(head_to_head / SHIPPED).version == SHIPPED
