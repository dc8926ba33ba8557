"""``categorizer serve`` end to end with no REDIS_URL: embedded redis-server, worker, gunicorn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.integration.samples import CHARGER
from web.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"serve exited early with {proc.returncode}"
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError("serve did not become ready")


def test_serve_embedded_end_to_end(tmp_path, models_dir):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["CATEGORIZER_MODEL_DIR"] = str(models_dir)
    env["CATEGORIZER_HEARTBEAT_INTERVAL"] = "0.5"
    data_dir = tmp_path / ".categorizer"  # the default, relative to the working directory
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,  # a fresh directory: nothing but the command and the model
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        resp = requests.post(
            url + "/v1/jobs",
            json={"products": [{"id": "c1", "text": CHARGER[1]}]},
            timeout=10,
        )
        assert resp.status_code == 202, resp.text
        job = requests.get(url + resp.headers["Location"], params={"wait": 30}, timeout=40).json()
        assert job["status"] == "succeeded", job
        assert job["results"][0]["id"] == "c1"
        assert job["results"][0]["category"] == "Electronics"
        ready = requests.get(url + "/readyz", timeout=5).json()
        assert ready["checks"]["workers"]["count"] == 1
        # micro-batching is on in serve: a separate worker consumes the batch queue, and /readyz checks it
        assert ready["checks"]["batch_workers"]["count"] == 1
        (batch_worker,) = ready["checks"]["batch_workers"]["workers"]
        assert batch_worker["queues"] == ["interactive-batch"]
        assert "interactive-batch" not in ready["checks"]["workers"]["workers"][0]["queues"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    output = (tmp_path / "serve.log").read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "categorizer: stopped" in output
    # the one-product job went through the batch worker (worker.batching logs each batch)
    assert "microbatch jobs=1 products=1" in output, output[-3000:]
    # persisted: the embedded Redis wrote its append-only file in the data directory
    redis_dir = data_dir / "redis"
    assert any(p.name.startswith("appendonly") for p in redis_dir.iterdir()), list(redis_dir.iterdir())
    # nothing left listening
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/healthz", timeout=2)
