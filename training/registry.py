"""The model directory as a registry: bundle summaries, the publication history and rollback.

``<models>/history.json`` records every switch of the ``current`` pointer made through
``training.bundle.set_current`` (``train --publish``, ``models rollback``)::

    {"events": [{"version": "v2", "action": "publish", "previous": "v1", "at": "2025-...Z"}, ...]}

It is written atomically (temporary file + ``os.replace``) under an exclusive ``flock`` on
``<models>/.history.lock``, so two publishers never lose each other's event.

**Rollback target.** Replaying the events gives a *publication stack*: a publish pushes its
version; a rollback to a version already on the stack pops everything above it (a rollback to
a version not on the stack pushes it). ``models rollback`` without a version makes the entry
below the top current, so repeated rollbacks walk back v3 -> v2 -> v1 instead of toggling
between two versions, and a bundle that failed the quality gate (never published) is never
picked. A pointer written by hand (not through ``set_current``) is reconciled the same way
as a rollback. Entries whose bundle is gone or fails verification are skipped.

TF-free and onnxruntime-free: the web tier imports it to serve ``/v1/model(s)``.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

HISTORY = "history.json"
LOCK = ".history.lock"


class RegistryError(Exception):
    """No model directory, no such version, or nothing to roll back to."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@contextmanager
def _locked(models_dir: Path):
    with open(models_dir / LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_history(models_dir: Path) -> list[dict]:
    """The pointer events, oldest first (empty when there is no readable history)."""
    try:
        data = json.loads((Path(models_dir) / HISTORY).read_text(encoding="utf-8"))
        events = data["events"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return []
    return [e for e in events if isinstance(e, dict) and isinstance(e.get("version"), str)]


def record_switch(models_dir: Path, version: str, previous: str | None, action: str = "publish") -> None:
    """Append one pointer event. Seeds the history with ``previous`` when it starts empty."""
    models_dir = Path(models_dir)
    with _locked(models_dir):
        events = read_history(models_dir)
        if not events and previous and previous != version:
            events.append({"version": previous, "action": "seed", "previous": None, "at": None})
        events.append({"version": version, "action": action, "previous": previous, "at": _now()})
        fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=".history-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"events": events}, fh, indent=2)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, models_dir / HISTORY)


def publication_stack(events: list[dict], current: str | None = None) -> list[str]:
    """Replay ``events`` (see the module docstring); ``current`` reconciles a hand-set pointer."""
    stack: list[str] = []

    def to(version: str) -> None:
        if version in stack:
            del stack[stack.index(version) + 1 :]
        else:
            stack.append(version)

    for event in events:
        if event.get("action") == "rollback":
            to(event["version"])
        else:
            if event["version"] in stack:
                stack.remove(event["version"])
            stack.append(event["version"])
    if current and (not stack or stack[-1] != current):
        to(current)
    return stack


def _current(models_dir: Path) -> str | None:
    from training.bundle import BundleError, read_current

    try:
        return read_current(models_dir)
    except BundleError:
        return None


def previous_version(models_dir: Path) -> str:
    """The version ``models rollback`` without a version goes back to. Raises ``RegistryError``."""
    from training.bundle import BundleError, verify_bundle

    models_dir = Path(models_dir)
    current = _current(models_dir)
    stack = publication_stack(read_history(models_dir), current)
    for version in reversed(stack[:-1] if stack and stack[-1] == current else stack):
        if version == current:
            continue
        try:
            verify_bundle(models_dir / version)
        except BundleError:
            continue
        return version
    raise RegistryError(
        f"no earlier published version to roll back to in {models_dir} (history: {' -> '.join(stack) or 'empty'}); "
        "name one: categorizer models rollback VERSION"
    )


def rollback(models_dir: Path, version: str | None = None) -> tuple[str | None, str]:
    """Make ``version`` (default: ``previous_version``) current. Returns (from, to)."""
    from training.bundle import BundleError, set_current

    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise RegistryError(f"model directory {models_dir} does not exist")
    current = _current(models_dir)
    target = version or previous_version(models_dir)
    if not (models_dir / target).is_dir():
        raise RegistryError(f"no bundle {target!r} in {models_dir}")
    try:
        set_current(models_dir, target, action="rollback")
    except BundleError as exc:
        raise RegistryError(f"refusing to roll back to {target}: {exc}") from None
    return current, target


# -- summaries (GET /v1/model(s), categorizer models list/show) ---------------------------------


def summary(models_dir: Path, version: str, current: str | None = None) -> dict:
    """What a client needs to know about one bundle, from its ``metrics.json`` (no checksums)."""
    bundle = Path(models_dir) / version
    try:
        metrics = json.loads((bundle / "metrics.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError) as exc:
        metrics = {}
        error = f"unreadable metrics.json: {exc}"
    else:
        error = None
    evaluation = metrics.get("evaluation") or {}
    lstm = evaluation.get("lstm") or {}

    def scores(part: str) -> dict | None:
        s = lstm.get(part)
        if not isinstance(s, dict):
            return None
        return {k: s[k] for k in ("accuracy", "macro_f1") if k in s}

    data = metrics.get("data") or {}
    out = {
        "version": version,
        "current": version == current,
        "trained_at": metrics.get("trained_at"),
        "data": {"file": data.get("file"), "sha256": data.get("sha256")},
        "test": scores("test"),
        "validation": scores("val"),
        "ood": scores("ood"),
        "hyperparameters": metrics.get("hyperparameters"),
        "quality_gate": _gate_summary(metrics.get("quality_gate")),
    }
    if error:
        out["error"] = error
    return out


def _gate_summary(gate: dict | None) -> dict | None:
    """The recorded verdict, short: passed, the failures, and which version it was compared with."""
    if not isinstance(gate, dict):
        return None  # bundles trained before verdicts were recorded
    compared = gate.get("compared_with") or {}
    out = {
        "passed": gate.get("passed"),
        "failures": gate.get("failures", []),
        "compared_with": None if "skipped" in compared else compared.get("version"),
        "basis": compared.get("basis"),
    }
    if "skipped" in compared:
        out["skipped"] = compared["skipped"]
    return out


def list_summaries(models_dir: Path) -> tuple[str | None, list[dict]]:
    """(current version, a summary per bundle), bundles sorted by name (oldest first)."""
    from training.bundle import list_versions

    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise RegistryError(f"model directory {models_dir} does not exist")
    current = _current(models_dir)
    return current, [summary(models_dir, v, current) for v in list_versions(models_dir)]
