"""The model bundle: on-disk format, checksums, the ``current`` pointer and the TF-free loader.

A bundle is a directory ``<models>/<version>/`` holding::

    model.keras      the trained Keras network (source of truth, not loaded when serving)
    model.onnx       the serving graph (ONNX Runtime)
    tokenizer.json   vocabulary and settings (see ``training.tokenizer``)
    labels.json      the category names, in output order
    metrics.json     dataset hash, split sizes, hyper-parameters, test and OOD scores
    manifest.json    SHA-256 of every other file in the bundle

``<models>/current`` is a one-line text file naming the current version. It is replaced
atomically (write a temporary file, then ``os.replace``), after the bundle is complete.

This module must never import TensorFlow: workers and the web tier import it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.tokenizer import Tokenizer, lengths

MANIFEST = "manifest.json"
CURRENT = "current"
REQUIRED_FILES = ("model.onnx", "tokenizer.json", "labels.json", "metrics.json")
ONNX_INPUT_IDS = "ids"
ONNX_INPUT_LENGTHS = "lengths"
ONNX_OUTPUT = "probabilities"


class BundleError(Exception):
    """A bundle is missing, incomplete, altered or inconsistent."""


def default_models_dir() -> Path:
    """``CATEGORIZER_MODEL_DIR``, else ``./saved_models``, else the one beside this package."""
    env = os.environ.get("CATEGORIZER_MODEL_DIR")
    if env:
        return Path(env)
    local = Path.cwd() / "saved_models"
    if local.is_dir():
        return local
    return Path(__file__).resolve().parent.parent / "saved_models"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(bundle_dir: Path) -> dict:
    """Record the SHA-256 of every file in the bundle (except the manifest itself)."""
    files = {p.name: sha256_file(p) for p in sorted(bundle_dir.iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {"version": bundle_dir.name, "files": files}
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def verify_bundle(bundle_dir: Path) -> dict:
    """Check the manifest and every checksum. Returns the manifest; raises ``BundleError``."""
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle {bundle_dir} does not exist")
    try:
        manifest = json.loads((bundle_dir / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        raise BundleError(f"bundle {bundle_dir} has no {MANIFEST}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"bundle {bundle_dir}: unreadable {MANIFEST}: {exc}") from None
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleError(f"bundle {bundle_dir}: {MANIFEST} does not list required file {name}")
    for name, expected in files.items():
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(f"bundle {bundle_dir}: file {name} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(f"bundle {bundle_dir}: checksum mismatch for {name} (file altered or truncated)")
    return manifest


def read_current(models_dir: Path | None = None) -> str:
    """The version name the ``current`` pointer names."""
    models_dir = Path(models_dir) if models_dir else default_models_dir()
    try:
        version = (models_dir / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise BundleError(f"no '{CURRENT}' pointer in {models_dir}: train with --publish first") from None
    except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, garbage bytes
        raise BundleError(f"unreadable '{CURRENT}' pointer in {models_dir}: {exc}") from None
    if not version or "/" in version or version.startswith("."):
        raise BundleError(f"invalid '{CURRENT}' pointer in {models_dir}: {version!r}")
    return version


def set_current(models_dir: Path, version: str, action: str = "publish") -> None:
    """Point ``current`` at ``version`` atomically (after checking the bundle is complete).

    The switch is recorded in ``<models>/history.json`` (``action``: publish or rollback), which
    ``models rollback`` replays (see ``training.registry``).
    """
    models_dir = Path(models_dir)
    verify_bundle(models_dir / version)
    try:
        previous = read_current(models_dir)
    except BundleError:
        previous = None
    fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=".current-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(version + "\n")
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; workers may run as another user
    os.replace(tmp, models_dir / CURRENT)
    from training.registry import record_switch

    try:
        record_switch(models_dir, version, previous, action)
    except OSError as exc:  # the pointer moved; a history that cannot be written must not undo that
        logging.getLogger("categorizer.training").warning("history_not_written models_dir=%s error=%s", models_dir, exc)


def list_versions(models_dir: Path | None = None) -> list[str]:
    """Bundle directories (those with a manifest), oldest name first."""
    models_dir = Path(models_dir) if models_dir else default_models_dir()
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if (p / MANIFEST).is_file())


@dataclass
class Bundle:
    """A loaded, verified model bundle ready to categorize texts with ONNX Runtime."""

    path: Path
    version: str
    labels: list[str]
    tokenizer: Tokenizer
    metrics: dict
    session: object = field(repr=False)
    loaded_at: float = field(default_factory=time.time)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Probabilities, shape ``(len(texts), len(labels))``, in one batched ONNX call.

        Rows are cut to the longest text of the batch: the graph reads each row's own
        length (the LSTM's ``sequence_lens``), so padding never changes a result.
        """
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        ids = self.tokenizer.encode(texts)
        lens = lengths(ids)
        ids = np.ascontiguousarray(ids[:, : int(lens.max())])
        (probs,) = self.session.run([ONNX_OUTPUT], {ONNX_INPUT_IDS: ids, ONNX_INPUT_LENGTHS: lens})
        return probs

    def warm_up(self, batch: int = 256, calls: int = 2) -> None:
        """Run a few full-length batches, so that ONNX Runtime has sized its buffers before real
        traffic arrives (measured: the first call on a fresh session runs at about half speed)."""
        text = " ".join(self.tokenizer.vocab[: self.tokenizer.seq_len]) or "warm up"
        for _ in range(calls):
            self.predict_proba([text] * batch)

    def predict(self, texts: list[str]) -> list[dict]:
        """For each text: ``category``, ``confidence`` and the ``probabilities`` of every label."""
        probs = self.predict_proba(texts)
        best = probs.argmax(axis=1)
        out = []
        for row, k in zip(probs.tolist(), best.tolist(), strict=True):
            out.append(
                {
                    "category": self.labels[k],
                    "confidence": row[k],
                    "probabilities": dict(zip(self.labels, row, strict=True)),
                }
            )
        return out


def make_session(model_path: Path, threads: int | None = None):
    """An ONNX Runtime session with an explicit thread count (0 = ONNX Runtime's default)."""
    import onnxruntime as ort

    if threads is None:
        threads = int(os.environ.get("CATEGORIZER_ORT_THREADS", "1"))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])


def load_bundle(path: str | Path | None = None, threads: int | None = None) -> Bundle:
    """Load and verify a bundle directory (default: the ``current`` one of the model dir).

    Raises ``BundleError`` with a clear message when a file is missing, altered or
    inconsistent with the others.
    """
    if path is None:
        models_dir = default_models_dir()
        path = models_dir / read_current(models_dir)
    path = Path(path)
    verify_bundle(path)
    try:
        labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        tokenizer = Tokenizer.load(path / "tokenizer.json")
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"bundle {path}: unreadable metadata: {exc}") from None
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise BundleError(f"bundle {path}: labels.json must be a non-empty list of names")
    try:
        session = make_session(path / "model.onnx", threads)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(f"bundle {path}: model.onnx does not load: {exc}") from None
    inputs = {i.name for i in session.get_inputs()}
    if inputs != {ONNX_INPUT_IDS, ONNX_INPUT_LENGTHS}:
        raise BundleError(f"bundle {path}: model.onnx inputs are {sorted(inputs)}, expected ids and lengths")
    out_dim = session.get_outputs()[0].shape[-1]
    if isinstance(out_dim, int) and out_dim != len(labels):
        raise BundleError(f"bundle {path}: model has {out_dim} outputs but labels.json names {len(labels)}")
    vocab_size = metrics.get("hyperparameters", {}).get("vocab_size")
    if vocab_size is not None and vocab_size != tokenizer.vocab_size:
        raise BundleError(f"bundle {path}: tokenizer has {tokenizer.vocab_size} ids, model expects {vocab_size}")
    return Bundle(
        path=path,
        version=path.name,
        labels=labels,
        tokenizer=tokenizer,
        metrics=metrics,
        session=session,
    )
