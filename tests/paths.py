"""Where the tests find the repository, the shipped models and the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAVED_MODELS = REPO / "saved_models"
SHARED_DATA = Path(os.environ.get("CATEGORIZER_SHARED_DATA", REPO.parent / "shared" / "data"))
DATASET = SHARED_DATA / "ecommerce_sample.csv"
OOD = SHARED_DATA / "ood" / "ood.csv"
