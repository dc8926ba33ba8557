"""Workers started with ``categorizer worker`` pick up a newly published bundle between batches."""

from __future__ import annotations

import shutil
import sys

import pytest

from tests.integration.samples import CHARGER
from training.bundle import read_current, set_current
from web.client import Client
from web.services import ManagedProcess, wait_worker

pytestmark = pytest.mark.integration


def test_worker_cli_reloads_published_bundle(tmp_path, models_dir, redis_factory, server_factory):
    shipped = models_dir / read_current(models_dir)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(shipped, models / "v-one")
    set_current(models, "v-one")
    url = redis_factory().url()
    worker = ManagedProcess(
        "worker",
        [sys.executable, "-m", "web.cli", "worker", "--hostname", "reload@%h", "--ort-threads", "1"],
        env={
            "REDIS_URL": url,
            "CATEGORIZER_MODEL_DIR": str(models),
            "CATEGORIZER_MODEL_CHECK_INTERVAL": "0",
            "CATEGORIZER_HEARTBEAT_INTERVAL": "0.5",
        },
        log_path=tmp_path / "worker.log",
    )
    try:
        wait_worker(url, timeout=60, process=worker)
        client = Client(server_factory(url).url)
        first = client.submit([CHARGER[1]]).wait(30)
        assert first.data["model_version"] == "v-one"
        assert first.results()[0]["category"] == "Electronics"

        shutil.copytree(shipped, models / "v-two")
        set_current(models, "v-two")
        second = client.submit([CHARGER[1]]).wait(30)
        assert second.data["model_version"] == "v-two"
        assert second.results()[0]["model_version"] == "v-two"
        assert second.results()[0]["probabilities"] == first.results()[0]["probabilities"]
        assert "model_reload from=v-one to=v-two" in (tmp_path / "worker.log").read_text()
    finally:
        worker.stop()
