"""Fixtures shared by every test directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.paths import SAVED_MODELS


@pytest.fixture(scope="session")
def shipped_bundle_dir() -> Path:
    """The bundle the project ships (``saved_models/<current>``)."""
    version = (SAVED_MODELS / "current").read_text(encoding="utf-8").strip()
    return SAVED_MODELS / version


@pytest.fixture
def bundle_copy(tmp_path, shipped_bundle_dir) -> Path:
    """A private copy of the shipped bundle that a test may damage."""
    dest = tmp_path / "models" / shipped_bundle_dir.name
    shutil.copytree(shipped_bundle_dir, dest)
    return dest
