"""The model runtime of a worker process: one bundle, one ONNX Runtime session per process.

The bundle is loaded after the fork (``worker_process_init``), so each pool process owns its
session and the parent never loads ONNX Runtime. Between batches the holder checks (at most
every ``CATEGORIZER_MODEL_CHECK_INTERVAL`` seconds, default 5) whether the ``current`` pointer
names another version, and loads it before the next batch: publishing a model needs no
worker restart.

Every batch is logged on one line that is easy to grep::

    batch job_id=... size=12 unique=11 latency_ms=1.84 model_version=20250101-120000
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from celery import signals

log = logging.getLogger("categorizer.worker")


class ModelHolder:
    """Loads the current bundle lazily and reloads it when the pointer moves."""

    def __init__(self, models_dir: Path | None = None, check_interval: float | None = None):
        self.models_dir = models_dir
        if check_interval is None:
            check_interval = float(os.environ.get("CATEGORIZER_MODEL_CHECK_INTERVAL", "5"))
        self.check_interval = check_interval
        self.bundle = None
        self.error: str | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def _dir(self) -> Path:
        from training.bundle import default_models_dir

        return Path(self.models_dir) if self.models_dir else default_models_dir()

    def load(self) -> None:
        """Load the ``current`` bundle now. Records (and logs) the error instead of raising."""
        from training.bundle import BundleError, load_bundle, read_current

        models_dir = self._dir()
        started = time.perf_counter()
        try:
            bundle = load_bundle(models_dir / read_current(models_dir))
        except BundleError as exc:
            self.error = str(exc)
            log.error("model_load_failed pid=%s models_dir=%s error=%s", os.getpid(), models_dir, exc)
            return
        self.bundle, self.error = bundle, None
        self._checked_at = time.monotonic()
        log.info(
            "model_loaded pid=%s model_version=%s labels=%s load_ms=%.1f",
            os.getpid(),
            bundle.version,
            ",".join(bundle.labels),
            (time.perf_counter() - started) * 1000,
        )

    def get(self):
        """The bundle to use for the next batch (loading or reloading it if needed)."""
        from training.bundle import BundleError, read_current

        with self._lock:
            if self.bundle is None:
                self.load()
            elif time.monotonic() - self._checked_at >= self.check_interval:
                self._checked_at = time.monotonic()
                try:
                    current = read_current(self._dir())
                except BundleError:
                    current = self.bundle.version
                if current != self.bundle.version:
                    log.info("model_reload from=%s to=%s", self.bundle.version, current)
                    previous = self.bundle
                    self.load()
                    if self.bundle is None:
                        self.bundle = previous
            return self.bundle


#: The holder of this process.
holder = ModelHolder()

#: Called after every model call as ``hook(size=, unique=, seconds=, model_version=)`` (metrics,
#: see ``worker.metrics``). A hook must be cheap and must not raise.
BATCH_HOOKS: list = []


@signals.worker_process_init.connect
def _load_after_fork(**_kwargs) -> None:
    holder.load()


def categorize(job_id: str, texts: list[str]) -> tuple[list[dict], str]:
    """Categorize ``texts`` in one batched call. Returns (predictions, model version).

    Identical texts in a batch (product variants) cost one inference.
    Raises ``RuntimeError`` when no model can be loaded.
    """
    bundle = holder.get()
    if bundle is None:
        raise RuntimeError(f"no model loaded: {holder.error}")
    started = time.perf_counter()
    index: dict[str, int] = {}
    unique: list[str] = []
    positions = []
    for text in texts:
        k = index.get(text)
        if k is None:
            k = index[text] = len(unique)
            unique.append(text)
        positions.append(k)
    predictions = bundle.predict(unique)
    out = [predictions[k] for k in positions]
    seconds = time.perf_counter() - started
    for hook in BATCH_HOOKS:
        hook(size=len(texts), unique=len(unique), seconds=seconds, model_version=bundle.version)
    log.info(
        "batch job_id=%s size=%d unique=%d latency_ms=%.2f model_version=%s pid=%d",
        job_id,
        len(texts),
        len(unique),
        seconds * 1000,
        bundle.version,
        os.getpid(),
    )
    return out, bundle.version
