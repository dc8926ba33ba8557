"""The quality gate (``training.gate``): minimums, and no regression against the current bundle
scored on the same test texts. Uses the shipped bundle as the current one (ONNX Runtime only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.integration.samples import OBVIOUS
from training import LABELS
from training.bundle import read_current, set_current
from training.gate import quality_gate, render_gate
from training.registry import summary

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "saved_models"
SHIPPED = read_current(SHIPPED_DIR)
TEXTS = [text for _, text, _ in OBVIOUS]
TRUTH = [category for _, _, category in OBVIOUS]  # the shipped model gets all four right


@pytest.fixture
def models(tmp_path) -> Path:
    shutil.copytree(SHIPPED_DIR / SHIPPED, tmp_path / SHIPPED)
    set_current(tmp_path, SHIPPED)
    return tmp_path


def gate(models: Path, accuracy: float, macro_f1: float | None = None, **kwargs) -> dict:
    new = {"accuracy": accuracy, "macro_f1": accuracy if macro_f1 is None else macro_f1}
    kwargs.setdefault("data_sha256", "00" * 32)
    kwargs.setdefault("split", {"seed": 1})
    return quality_gate(new, TEXTS, TRUTH, list(LABELS), models_dir=models, **kwargs)


def test_a_bundle_as_good_as_current_on_the_same_texts_passes(models):
    verdict = gate(models, 1.0)
    assert verdict["passed"] and verdict["failures"] == []
    assert verdict["compared_with"]["version"] == SHIPPED
    assert verdict["compared_with"]["scores"] == {"accuracy": 1.0, "macro_f1": 1.0}
    assert [c["check"] for c in verdict["checks"]] == [
        "min_accuracy",
        "min_macro_f1",
        "no_regression_accuracy",
        "no_regression_macro_f1",
    ]


def test_a_regression_on_the_same_texts_fails_with_a_reason(models):
    # 0.996 is within the 0.005 allowance of the current bundle's 1.0; 0.99 is not
    assert gate(models, 0.996)["passed"]
    verdict = gate(models, 0.99, macro_f1=1.0)
    assert not verdict["passed"]
    assert verdict["failures"] == [
        f"test accuracy 0.9900 regresses from current {SHIPPED} (1.0000 on the same test texts) by more than 0.0050"
    ]
    failed = [c["check"] for c in verdict["checks"] if not c["passed"]]
    assert failed == ["no_regression_accuracy"]


def test_minimums_apply_with_or_without_a_current_bundle(tmp_path):
    verdict = gate(tmp_path, 0.9, macro_f1=0.8, min_accuracy=0.95, min_macro_f1=0.85)
    assert verdict["compared_with"] is None
    assert verdict["failures"] == [
        "test accuracy 0.9000 is below the minimum 0.9500",
        "test macro-F1 0.8000 is below the minimum 0.8500",
    ]
    assert gate(tmp_path, 0.9, min_accuracy=0.9)["passed"]


def test_a_current_bundle_that_does_not_load_is_skipped_and_the_verdict_says_why(models):
    (models / SHIPPED / "model.onnx").write_bytes(b"truncated")
    verdict = gate(models, 0.5)
    assert verdict["passed"]
    assert verdict["compared_with"]["version"] == SHIPPED
    assert "does not load" in verdict["compared_with"]["skipped"]
    assert "No-regression check skipped" in "\n".join(render_gate(verdict))


def test_same_split_is_recorded(models):
    shipped = json.loads((models / SHIPPED / "metrics.json").read_text())
    same = gate(models, 1.0, data_sha256=shipped["data"]["sha256"], split=shipped["split"])
    assert same["compared_with"]["same_split"] is True
    other = gate(models, 1.0)
    assert other["compared_with"]["same_split"] is False
    assert "may flatter it" in "\n".join(render_gate(other))


def test_the_registry_summary_reports_the_recorded_verdict(models):
    bundle = models / SHIPPED
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert summary(models, SHIPPED, SHIPPED)["quality_gate"] is None  # trained before verdicts were recorded
    metrics["quality_gate"] = gate(models, 0.5)
    (bundle / "metrics.json").write_text(json.dumps(metrics))
    assert summary(models, SHIPPED, SHIPPED)["quality_gate"] == {
        "passed": False,
        "failures": metrics["quality_gate"]["failures"],
        "compared_with": SHIPPED,
    }
