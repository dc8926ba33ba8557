"""Train, evaluate, export and (optionally) publish a model bundle.

Sections follow the Keras examples: data, model, train, evaluate, export, bundle.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from training import LABELS
from training.bundle import default_models_dir, make_session, set_current, write_manifest
from training.data import load_dataset, load_ood
from training.evaluate import SvmBaseline, coverage_table, plot_confusion, plot_history, render_report, scores
from training.gate import quality_gate, write_seen
from training.split import split_dataset
from training.tokenizer import Tokenizer, lengths

log = logging.getLogger("categorizer.train")


@dataclass
class TrainConfig:
    data: Path
    models_dir: Path | None = None
    version: str | None = None
    epochs: int = 12
    seq_len: int = 64
    vocab_size: int = 20000
    min_count: int = 2
    embed_dim: int = 128
    lstm_units: int = 64
    dense_units: int = 64
    dropout: float = 0.5
    embed_dropout: float = 0.0
    pooling: str = "last"
    learning_rate: float = 2e-3
    batch_size: int = 64
    patience: int = 2
    val_size: float = 0.15
    test_size: float = 0.15
    seed: int = 42
    init_seed: int | None = None  # weights/shuffling seed; defaults to seed
    ood: Path | None = None
    logdir: Path | None = None
    max_rows: int | None = None
    publish: bool = False
    min_accuracy: float = 0.0
    min_macro_f1: float = 0.0
    max_regression: float = 0.005
    verbose: int = 2


@dataclass
class TrainResult:
    bundle_dir: Path
    metrics: dict
    published: bool
    gate_failures: list[str]


def _subsample(texts: list[str], labels: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(texts), size=min(n, len(texts)), replace=False))
    return [texts[i] for i in keep], [labels[i] for i in keep]


def _onnx_proba(session, tokenizer: Tokenizer, texts: list[str], batch: int = 512) -> np.ndarray:
    out = []
    for start in range(0, len(texts), batch):
        ids = tokenizer.encode(texts[start : start + batch])
        lens = lengths(ids)
        ids = np.ascontiguousarray(ids[:, : int(lens.max())])
        out.append(session.run(["probabilities"], {"ids": ids, "lengths": lens})[0])
    return np.concatenate(out) if out else np.zeros((0, len(LABELS)), np.float32)


def train(cfg: TrainConfig) -> TrainResult:
    t_start = time.perf_counter()
    models_dir = Path(cfg.models_dir) if cfg.models_dir else default_models_dir()
    models_dir.mkdir(parents=True, exist_ok=True)
    version = cfg.version or "v" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    labels = list(LABELS)

    # --- data -----------------------------------------------------------------------------
    data = load_dataset(cfg.data)
    log.info("data %s: %s", cfg.data, data.stats)
    texts, y = data.texts, data.labels
    if cfg.max_rows:
        texts, y = _subsample(texts, y, cfg.max_rows, cfg.seed)
    split = split_dataset(texts, y, cfg.val_size, cfg.test_size, cfg.seed)
    log.info("split: %s", split.stats)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = split.train, split.val, split.test
    tokenizer = Tokenizer.fit(x_tr, cfg.vocab_size, cfg.seq_len, cfg.min_count)
    label_id = {lb: i for i, lb in enumerate(labels)}
    ids_tr, ids_va = tokenizer.encode(x_tr), tokenizer.encode(x_va)
    t_tr = np.array([label_id[v] for v in y_tr], dtype=np.int32)
    t_va = np.array([label_id[v] for v in y_va], dtype=np.int32)

    # --- model and training -------------------------------------------------------------------
    import keras

    from training.export import check_parity, keras_to_onnx
    from training.model import build_model

    keras.utils.set_random_seed(cfg.seed if cfg.init_seed is None else cfg.init_seed)
    model = build_model(
        tokenizer.vocab_size,
        len(labels),
        cfg.embed_dim,
        cfg.lstm_units,
        cfg.dense_units,
        cfg.dropout,
        cfg.learning_rate,
        cfg.pooling,
        cfg.embed_dropout,
    )
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)]
    if cfg.logdir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(Path(cfg.logdir) / version)))
    t_fit = time.perf_counter()
    hist = model.fit(
        ids_tr,
        t_tr,
        validation_data=(ids_va, t_va),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        callbacks=callbacks,
        verbose=cfg.verbose,
    )
    fit_seconds = time.perf_counter() - t_fit
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    best_epoch = int(np.argmin(history["val_loss"])) + 1

    # --- export (into a temporary dir, renamed into place once complete) -------------------
    tmp_dir = models_dir / f".tmp-{version}-{os.getpid()}"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    tmp_dir.mkdir()
    _save_without_optimizer(model, tmp_dir / "model.keras")
    keras_to_onnx(model, tmp_dir / "model.onnx")
    parity = check_parity(model, tmp_dir / "model.onnx", ids_va)
    tokenizer.save(tmp_dir / "tokenizer.json")
    (tmp_dir / "labels.json").write_text(json.dumps(labels) + "\n", encoding="utf-8")
    write_seen(tmp_dir, x_tr + x_va)  # what a later gate must not score this bundle on

    # --- evaluation: the served ONNX graph, beside the SVM on the same split ----------------
    session = make_session(tmp_dir / "model.onnx", threads=0)
    svm = SvmBaseline(cfg.seed).fit(x_tr, y_tr)
    evaluation: dict = {"lstm": {}, "svm": {}, "coverage": {}}
    predicted: dict[str, list[str]] = {}
    sets = {"val": (x_va, y_va), "test": (x_te, y_te)}
    if cfg.ood:
        ood = load_ood(cfg.ood)
        sets["ood"] = (ood.texts, ood.labels)
    for name, (xs, ys) in sets.items():
        probs = _onnx_proba(session, tokenizer, xs)
        pred = predicted[name] = [labels[k] for k in probs.argmax(axis=1)]
        evaluation["lstm"][name] = scores(ys, pred, labels)
        evaluation["svm"][name] = scores(ys, svm.predict(xs), labels)
        if name in ("val", "test"):
            evaluation["coverage"][name] = coverage_table(ys, probs, labels)

    metrics = {
        "version": version,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {"file": Path(cfg.data).name, "sha256": data.sha256, **data.stats},
        "ood": {"file": Path(cfg.ood).name, "sha256": ood.sha256} if cfg.ood else None,
        "split": split.stats,
        "hyperparameters": {
            "seq_len": cfg.seq_len,
            "vocab_size": tokenizer.vocab_size,
            "embed_dim": cfg.embed_dim,
            "lstm_units": cfg.lstm_units,
            "dense_units": cfg.dense_units,
            "dropout": cfg.dropout,
            "embed_dropout": cfg.embed_dropout,
            "pooling": cfg.pooling,
            "learning_rate": cfg.learning_rate,
            "batch_size": cfg.batch_size,
            "max_epochs": cfg.epochs,
            "patience": cfg.patience,
            "seed": cfg.seed,
            "init_seed": cfg.init_seed,
            "truncation": "first tokens (title first)",
            "masking": "mask_zero in Keras, sequence_lens in ONNX",
        },
        "training": {
            "epochs_run": len(history["loss"]),
            "best_epoch": best_epoch,
            "fit_seconds": round(fit_seconds, 1),
            "history": history,
            "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        },
        "export": {"format": "onnx", "opset": 17, "parity_max_abs_diff": parity, "parity_set": "validation"},
        "evaluation": evaluation,
    }
    # the gate's verdict is recorded in every bundle, published or not
    metrics["quality_gate"] = quality_gate(
        x_te,
        y_te,
        predicted["test"],
        labels,
        models_dir=models_dir,
        min_accuracy=cfg.min_accuracy,
        min_macro_f1=cfg.min_macro_f1,
        max_regression=cfg.max_regression,
    )
    plot_history(history, tmp_dir / "training_curves.png")
    plot_confusion(
        evaluation["lstm"]["test"]["confusion_matrix"]["rows_true_cols_pred"],
        labels,
        "LSTM, test split",
        tmp_dir / "confusion_test.png",
    )
    metrics["training"]["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    (tmp_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (tmp_dir / "report.md").write_text(render_report(metrics), encoding="utf-8")
    write_manifest(tmp_dir)  # the manifest names the version through the final dir name
    final_dir = models_dir / version
    if final_dir.exists():
        shutil.rmtree(tmp_dir)
        raise FileExistsError(f"bundle {final_dir} already exists; pick another --version")
    os.replace(tmp_dir, final_dir)
    write_manifest(final_dir)

    # --- publish behind the quality gate ------------------------------------------------------
    gate = metrics["quality_gate"]
    published = cfg.publish and gate["passed"]
    if published:
        set_current(models_dir, version)
    return TrainResult(final_dir, metrics, published, gate["failures"])


def _save_without_optimizer(model, path: Path) -> None:
    """Save the network without its optimizer state (Adam's moments would triple the file)."""
    import keras

    # from_config gives an uncompiled twin: same layers and names, no optimizer to save
    twin = keras.Model.from_config(model.get_config())
    twin.set_weights(model.get_weights())
    twin.save(path)


def config_dict(cfg: TrainConfig) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
