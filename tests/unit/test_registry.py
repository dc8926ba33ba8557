"""Publication history, rollback targets and bundle summaries (``training.registry``)."""

from __future__ import annotations

import json

import pytest

from training.bundle import read_current, set_current, write_manifest
from training.registry import (
    RegistryError,
    list_summaries,
    previous_version,
    publication_stack,
    read_history,
    rollback,
    summary,
)


def fake_bundle(models, version: str, accuracy: float = 0.9) -> None:
    """A bundle that verifies (manifest + checksums); its model is not loadable, nor needed here."""
    d = models / version
    d.mkdir(parents=True)
    for name in ("model.onnx", "model.keras", "tokenizer.json"):
        (d / name).write_bytes(b"x")
    (d / "labels.json").write_text('["A", "B"]')
    metrics = {
        "trained_at": "2025-01-01T00:00:00+00:00",
        "data": {"file": "d.csv", "sha256": "ab" * 32},
        "evaluation": {"lstm": {"test": {"accuracy": accuracy, "macro_f1": accuracy - 0.01, "support": 3}}},
    }
    (d / "metrics.json").write_text(json.dumps(metrics))
    write_manifest(d)


@pytest.fixture
def models(tmp_path):
    for v in ("v1", "v2", "v3"):
        fake_bundle(tmp_path, v)
    return tmp_path


def test_repeated_rollbacks_walk_back_instead_of_toggling(models):
    for v in ("v1", "v2", "v3"):
        set_current(models, v)
    assert previous_version(models) == "v2"
    assert rollback(models) == ("v3", "v2")
    assert rollback(models) == ("v2", "v1")
    with pytest.raises(RegistryError, match="no earlier published version"):
        rollback(models)
    assert read_current(models) == "v1"
    assert [e["action"] for e in read_history(models)] == ["publish"] * 3 + ["rollback"] * 2


def test_never_published_and_broken_bundles_are_not_rollback_targets(models):
    set_current(models, "v1")
    set_current(models, "v3")  # v2 was trained but never published (say, it failed the gate)
    assert previous_version(models) == "v1"
    (models / "v1" / "model.onnx").write_bytes(b"altered")
    with pytest.raises(RegistryError):
        previous_version(models)


def test_history_is_seeded_with_the_pointer_it_found_and_a_hand_set_pointer_is_reconciled(models):
    (models / "current").write_text("v1\n")  # a pointer that predates the history
    set_current(models, "v2")
    assert [(e["version"], e["action"]) for e in read_history(models)] == [("v1", "seed"), ("v2", "publish")]
    (models / "current").write_text("v3\n")  # forced by hand, not recorded
    assert publication_stack(read_history(models), "v3") == ["v1", "v2", "v3"]
    assert previous_version(models) == "v2"


def test_rollback_to_a_named_version_verifies_it(models):
    set_current(models, "v1")
    (models / "v2" / "tokenizer.json").unlink()
    with pytest.raises(RegistryError, match="tokenizer.json is missing"):
        rollback(models, "v2")
    with pytest.raises(RegistryError, match="no bundle 'v9'"):
        rollback(models, "v9")
    assert rollback(models, "v3") == ("v1", "v3")


def test_summaries(models, tmp_path):
    set_current(models, "v2")
    current, rows = list_summaries(models)
    assert current == "v2" and [r["version"] for r in rows] == ["v1", "v2", "v3"]
    s = summary(models, "v2", current)
    assert s["current"] is True and s["test"] == {"accuracy": 0.9, "macro_f1": 0.89}
    assert s["data"]["sha256"] == "ab" * 32 and s["trained_at"].startswith("2025-01-01")
    with pytest.raises(RegistryError):
        list_summaries(tmp_path / "nowhere")


def test_model_endpoints(models, tmp_path):
    from web import create_app

    set_current(models, "v3")
    client = create_app({"REDIS_URL": "redis://127.0.0.1:1/0", "MODEL_DIR": str(models)}).test_client()
    assert client.get("/v1/model").get_json()["version"] == "v3"
    assert client.get("/v1/models").get_json()["current"] == "v3"
    assert client.get("/v1/models/v1").get_json()["current"] is False
    missing = client.get("/v1/models/v9")
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"
    empty = create_app({"REDIS_URL": "redis://127.0.0.1:1/0", "MODEL_DIR": str(tmp_path / "none")}).test_client()
    assert empty.get("/v1/model").status_code == 503 and empty.get("/v1/models").status_code == 503
