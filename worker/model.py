"""The model runtime of a worker process: one bundle, one ONNX Runtime session per process.

The bundle is loaded after the fork (``worker_process_init``), so each pool process owns its
session and the parent never loads ONNX Runtime. A watcher thread in each pool process reads the
``current`` pointer every ``CATEGORIZER_MODEL_CHECK_INTERVAL`` seconds (default 5) and, when it
names another version, loads that bundle beside the served one and swaps it in between batches:
publishing a model needs no worker restart. A bundle that fails to load is refused: the process
keeps serving the old one and reports the error (``worker.model_state`` -> heartbeat -> ``/readyz``).
See docs/models.md.

Every batch is logged on one line that is easy to grep::

    batch job_id=... size=12 unique=11 latency_ms=1.84 model_version=20250101-120000
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from celery import signals

log = logging.getLogger("categorizer.worker")


def _signature(bundle_dir: Path) -> tuple:
    """(name, size, mtime) of every file of a bundle: a failed bundle is retried once it changes."""
    try:
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in bundle_dir.iterdir()))
    except OSError:
        return ()


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).isoformat(timespec="seconds")


class ModelHolder:
    """Serves one bundle and swaps in a newly published one beside it (docs/models.md).

    ``refresh()`` reads the ``current`` pointer; when it names another version, the new bundle
    is loaded (verified, new ONNX Runtime session) while the old one keeps serving, then the
    reference is swapped: a batch in flight finishes with the bundle it started with, and the
    old bundle is freed when its last batch ends. A bundle that fails to load leaves the holder
    on the old one with ``error`` set; it is retried only when the pointer or its files change.

    In a worker pool process a watcher thread calls ``refresh()`` every ``check_interval``
    seconds (so idle processes switch too and no batch pays for a load); without the watcher
    (or with ``check_interval`` 0) ``get()`` checks before a batch.
    """

    def __init__(self, models_dir: Path | None = None, check_interval: float | None = None):
        self.models_dir = models_dir
        if check_interval is None:
            check_interval = float(os.environ.get("CATEGORIZER_MODEL_CHECK_INTERVAL", "5"))
        self.check_interval = check_interval
        self.bundle = None
        self.error: str | None = None
        self.error_version: str | None = None
        #: called with ``state()`` after every load attempt (reporting to Redis, see model_state)
        self.listeners: list = []
        self._failed: tuple | None = None  # (version, file signature) of the last failed load
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    def _dir(self) -> Path:
        from training.bundle import default_models_dir

        return Path(self.models_dir) if self.models_dir else default_models_dir()

    def state(self) -> dict:
        bundle = self.bundle
        return {
            "pid": os.getpid(),
            "model_version": bundle.version if bundle else None,
            "model_error": self.error,
            "error_version": self.error_version,
            "loaded_at": _iso(bundle.loaded_at) if bundle else None,
            "updated_at": _iso(),
        }

    def _notify(self) -> None:
        state = self.state()
        for listener in self.listeners:
            try:
                listener(state)
            except Exception as exc:  # reporting must never break serving
                log.warning("model_state_report_failed pid=%s error=%s", os.getpid(), exc)

    def load(self, version: str | None = None) -> bool:
        """Load ``version`` (default: the ``current`` one) beside the served bundle, then switch.

        On failure the served bundle stays, ``error`` is recorded and logged. Returns success.
        """
        from training.bundle import BundleError, load_bundle, read_current

        models_dir = self._dir()
        started = time.perf_counter()
        try:
            version = version or read_current(models_dir)
            bundle = load_bundle(models_dir / version)
            bundle.warm_up()  # before it serves: no slow first batches after a start or a reload
        except Exception as exc:  # BundleError, and whatever else (warm-up, memory) must not escape
            message = str(exc) if isinstance(exc, BundleError) else f"{type(exc).__name__}: {exc}"
            self.error, self.error_version = message, version
            self._failed = (version, _signature(models_dir / version) if version else ())
            log.error(
                "model_load_failed pid=%s models_dir=%s version=%s serving=%s error=%s",
                os.getpid(),
                models_dir,
                version,
                self.bundle.version if self.bundle else None,
                message,
            )
            self._notify()
            return False
        self.bundle, self.error, self.error_version, self._failed = bundle, None, None, None
        log.info(
            "model_loaded pid=%s model_version=%s labels=%s load_ms=%.1f",
            os.getpid(),
            bundle.version,
            ",".join(bundle.labels),
            (time.perf_counter() - started) * 1000,
        )
        self._notify()
        return True

    def refresh(self) -> None:
        """Check the pointer once and load the version it names if it is not the served one."""
        from training.bundle import BundleError, read_current

        with self._lock:
            self._checked_at = time.monotonic()
            models_dir = self._dir()
            try:
                current = read_current(models_dir)
            except BundleError as exc:  # no/invalid pointer: keep serving what we have
                if self.bundle is None:
                    if self.error != str(exc):
                        self.error, self.error_version = str(exc), None
                        log.error("model_load_failed pid=%s models_dir=%s error=%s", os.getpid(), models_dir, exc)
                        self._notify()
                return
            if self.bundle is not None and current == self.bundle.version:
                if self.error is not None:  # the pointer came back to the served version
                    self.error = self.error_version = None
                    self._failed = None
                    self._notify()
                return
            if self._failed is not None and self._failed == (current, _signature(models_dir / current)):
                return  # the same broken bundle: wait until the pointer or its files change
            if self.bundle is not None:
                log.info("model_reload from=%s to=%s pid=%s", self.bundle.version, current, os.getpid())
            self.load(current)

    def get(self):
        """The bundle for the next batch (loading it first if none is loaded yet)."""
        if self.bundle is None:
            self.refresh()
        elif self._watcher is None and time.monotonic() - self._checked_at >= self.check_interval:
            self.refresh()
        return self.bundle

    # -- the watcher thread of a pool process ------------------------------------------------------
    def start_watcher(self) -> None:
        """Poll the pointer every ``check_interval`` s in a daemon thread (no-op when 0)."""
        if self.check_interval <= 0 or self._watcher is not None:
            return
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
        self._watcher.start()

    def stop_watcher(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
        self._watcher = None

    def _watch(self) -> None:
        while not self._stop.wait(self.check_interval):
            try:
                self.refresh()
                if self._report_failed:  # the last state report did not reach Redis: send it again
                    self._notify()
            except Exception:  # never let the watcher die
                log.exception("model_watch_failed pid=%s", os.getpid())

    #: set by the Redis reporter when a state write failed
    _report_failed = False


#: The holder of this process.
holder = ModelHolder()

#: The worker's hostname, set in the main process before the pool forks (``celeryd_init``).
_hostname: str | None = None
_state_client: tuple[int, object] | None = None


@signals.celeryd_init.connect
def _remember_hostname(sender=None, **_kwargs) -> None:
    global _hostname
    _hostname = sender


def _report_state(state: dict) -> None:
    """Publish this process's model state for the heartbeat (``worker.model_state``)."""
    global _state_client
    if _hostname is None:
        return
    from worker import model_state
    from worker.celery_app import app
    from worker.jobstore import connect

    if _state_client is None or _state_client[0] != os.getpid():
        _state_client = (os.getpid(), connect(app.conf.broker_url))
    try:
        model_state.publish(_state_client[1], _hostname, state)
        holder._report_failed = False
    except Exception:
        holder._report_failed = True  # Redis away: the watcher reports again on its next tick
        raise


#: Called after every model call as ``hook(size=, unique=, seconds=, model_version=)`` (metrics,
#: see ``worker.metrics``). A hook must be cheap and must not raise.
BATCH_HOOKS: list = []


@signals.worker_process_init.connect
def _load_after_fork(**_kwargs) -> None:
    holder.listeners.append(_report_state)
    try:
        holder.refresh()
    finally:
        holder.start_watcher()  # even if the first load raised: the watcher retries and reports


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
