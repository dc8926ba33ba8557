"""Scores, the TF-IDF + linear SVM baseline, plots and the markdown report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)


def scores(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1 and the confusion matrix."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    report = classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": {
            lb: {k: float(report[lb][k]) for k in ("precision", "recall", "f1-score", "support")} for lb in labels
        },
        "confusion_matrix": {
            "labels": labels,
            "rows_true_cols_pred": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        },
    }


def coverage_table(y_true: list[str], probs: np.ndarray, labels: list[str]) -> list[dict]:
    """For each confidence threshold: share of texts auto-categorized and accuracy on them."""
    pred = np.asarray(labels)[probs.argmax(axis=1)]
    conf = probs.max(axis=1)
    truth = np.asarray(y_true)
    rows = []
    for t in THRESHOLDS:
        kept = conf >= t
        rows.append(
            {
                "threshold": t,
                "coverage": float(kept.mean()),
                "accuracy": float((pred[kept] == truth[kept]).mean()) if kept.any() else None,
            }
        )
    return rows


class SvmBaseline:
    """TF-IDF (word 1-2 grams, sublinear tf) + LinearSVC, trained on the same split."""

    def __init__(self, seed: int = 42) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline
        from sklearn.svm import LinearSVC

        self.pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            LinearSVC(C=1.0, random_state=seed),
        )

    def fit(self, texts: list[str], labels: list[str]) -> SvmBaseline:
        self.pipeline.fit(texts, labels)
        return self

    def predict(self, texts: list[str]) -> list[str]:
        return list(self.pipeline.predict(texts))


def plot_confusion(matrix: list[list[int]], labels: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    m = np.asarray(matrix)
    ax.imshow(m, cmap="Blues")
    short = [lb.split(" ")[0] for lb in labels]
    ax.set_xticks(range(len(labels)), short, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), short)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_history(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(history.get("loss", [])) + 1)
    for key, ax in (("loss", a1), ("accuracy", a2)):
        ax.plot(epochs, history.get(key, []), label=f"train {key}")
        ax.plot(epochs, history.get(f"val_{key}", []), label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def render_report(metrics: dict) -> str:
    """``report.md`` for a bundle, from its ``metrics.json`` content."""
    ev = metrics["evaluation"]
    lines = [
        f"# Model {metrics['version']}",
        "",
        f"Trained {metrics['trained_at']} on `{metrics['data']['file']}` "
        f"(SHA-256 `{metrics['data']['sha256']}`) in {metrics['training']['wall_seconds']:.0f} s.",
        "",
        "## Data and split",
        "",
        f"- rows read: {metrics['data']['rows_read']}, after cleaning: {metrics['data']['rows_after_cleaning']}, "
        f"unique texts: {metrics['split']['unique_texts']} (duplicates removed before splitting: "
        f"{metrics['split']['duplicates_removed']}, conflicting labels dropped: "
        f"{metrics['split']['conflicting_labels_dropped']})",
        f"- train / validation / test: {metrics['split']['train']} / {metrics['split']['val']} / "
        f"{metrics['split']['test']} (stratified, seed {metrics['split']['seed']})",
        "",
        "## Scores",
        "",
        "| model | set | n | accuracy | macro-F1 | weighted-F1 |",
        "|---|---|---|---|---|---|",
    ]
    for model in ("lstm", "svm"):
        for split in ("val", "test", "ood"):
            s = ev.get(model, {}).get(split)
            if s:
                lines.append(
                    f"| {model.upper()} | {split} | {s['n']} | {_pct(s['accuracy'])} | "
                    f"{s['macro_f1']:.4f} | {s['weighted_f1']:.4f} |"
                )
    lines += ["", "LSTM scores are those of the served ONNX graph.", "", "## LSTM per class (test)", ""]
    lines += ["| category | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for lb, s in ev["lstm"]["test"]["per_class"].items():
        lines.append(f"| {lb} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1-score']:.4f} | {int(s['support'])} |")
    lines += ["", "## Confusion matrix, LSTM, test (rows: true, columns: predicted)", ""]
    cm = ev["lstm"]["test"]["confusion_matrix"]
    lines.append("| | " + " | ".join(cm["labels"]) + " |")
    lines.append("|---" * (len(cm["labels"]) + 1) + "|")
    for lb, row in zip(cm["labels"], cm["rows_true_cols_pred"], strict=True):
        lines.append(f"| {lb} | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "![confusion matrix](confusion_test.png)", "", "## Confidence threshold (validation)", ""]
    lines += [
        "Share of products at or above the threshold (auto-categorized) and the accuracy on them. "
        "Chosen on validation; the test column confirms it.",
        "",
        "| threshold | coverage (val) | accuracy (val) | coverage (test) | accuracy (test) |",
        "|---|---|---|---|---|",
    ]
    for v, t in zip(ev["coverage"]["val"], ev["coverage"]["test"], strict=True):
        lines.append(
            f"| {v['threshold']:.2f} | {_pct(v['coverage'])} | {_pct(v['accuracy'])} | "
            f"{_pct(t['coverage'])} | {_pct(t['accuracy'])} |"
        )
    from training.gate import render_gate  # the gate scores with this module

    lines += ["", *render_gate(metrics.get("quality_gate"))]
    hp = metrics["hyperparameters"]
    lines += [
        "## Training",
        "",
        "Hyper-parameters: " + ", ".join(f"{k}={v}" for k, v in hp.items()),
        "",
        f"Epochs run: {metrics['training']['epochs_run']} (best: {metrics['training']['best_epoch']}), "
        f"ONNX parity on validation: max |Δp| = {metrics['export']['parity_max_abs_diff']:.1e}.",
        "",
        "![training curves](training_curves.png)",
        "",
    ]
    return "\n".join(lines)
