"""``worker.model.ModelHolder``: switch to a new bundle, refuse a broken one and keep serving."""

from __future__ import annotations

import shutil

import pytest

from tests.paths import SAVED_MODELS
from training.bundle import BundleError, read_current, set_current
from worker.model import ModelHolder


@pytest.fixture
def models(tmp_path):
    if not (SAVED_MODELS / "current").exists():
        pytest.skip("no shipped bundle")
    shipped = SAVED_MODELS / read_current(SAVED_MODELS)
    for v in ("a", "b", "broken"):
        shutil.copytree(shipped, tmp_path / v)
    set_current(tmp_path, "a")
    return tmp_path


def test_switch_refuse_and_retry_only_when_the_bundle_changes(models):
    states = []
    holder = ModelHolder(models, check_interval=0)
    holder.listeners.append(states.append)
    assert holder.get().version == "a"
    set_current(models, "b")
    old = holder.bundle
    assert holder.get().version == "b" and old.version == "a"  # a batch holding `old` still finishes with it

    tokenizer = (models / "broken" / "tokenizer.json").read_bytes()
    (models / "broken" / "tokenizer.json").unlink()
    (models / "current").write_text("broken\n")  # forced: set_current would refuse
    assert holder.get().version == "b"
    assert "tokenizer.json is missing" in holder.error and holder.error_version == "broken"
    reports = len(states)
    for _ in range(3):  # the same broken bundle is not loaded (nor reported) again
        assert holder.get().version == "b"
    assert len(states) == reports and states[-1]["model_error"] and states[-1]["model_version"] == "b"

    (models / "broken" / "tokenizer.json").write_bytes(tokenizer)  # repaired in place: retried
    assert holder.get().version == "broken" and holder.error is None
    set_current(models, "b")
    assert holder.get().version == "b"


def test_pointer_back_to_the_served_version_clears_the_error(models):
    holder = ModelHolder(models, check_interval=0)
    assert holder.get().version == "a"
    (models / "broken" / "labels.json").write_text("[]")
    (models / "current").write_text("broken\n")
    holder.refresh()
    assert holder.error and holder.bundle.version == "a"
    (models / "current").write_text("a\n")
    holder.refresh()
    assert holder.error is None and holder.bundle.version == "a"


def test_watcher_thread_switches_an_idle_holder(models):
    import time

    holder = ModelHolder(models, check_interval=0.05)
    holder.refresh()
    holder.start_watcher()
    try:
        set_current(models, "b")
        deadline = time.monotonic() + 30
        while holder.bundle.version != "b" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert holder.bundle.version == "b"
    finally:
        holder.stop_watcher()


def test_a_bundle_failing_beyond_verification_is_refused_reported_and_not_retried(models, monkeypatch):
    """An error that is not a BundleError (here: the warm-up) is handled like one: the served
    bundle stays, the error is recorded and reported, and the same bundle is not reloaded."""
    from training.bundle import Bundle

    states = []
    holder = ModelHolder(models, check_interval=0)
    holder.listeners.append(states.append)
    assert holder.get().version == "a"
    calls = []

    def failing_warm_up(self, *args, **kwargs):
        calls.append(self.version)
        raise RuntimeError("warm-up failed")

    monkeypatch.setattr(Bundle, "warm_up", failing_warm_up)
    set_current(models, "b")
    assert holder.get().version == "a"
    assert holder.error == "RuntimeError: warm-up failed" and holder.error_version == "b"
    assert states[-1]["model_error"] == "RuntimeError: warm-up failed"
    for _ in range(3):
        holder.get()
    assert calls == ["b"]  # tried once


@pytest.mark.parametrize("damage", ["directory", "bytes"])
def test_an_unreadable_pointer_keeps_the_served_bundle(models, damage):
    holder = ModelHolder(models, check_interval=0)
    assert holder.get().version == "a"
    (models / "current").unlink()
    if damage == "directory":
        (models / "current").mkdir()
    else:
        (models / "current").write_bytes(b"\xff\xfe\x00")
    holder.refresh()  # no exception
    assert holder.bundle.version == "a"
    with pytest.raises(BundleError, match="unreadable 'current' pointer"):
        read_current(models)
