import json
import subprocess
import sys

import numpy as np
import pytest

from tests.paths import REPO
from training.bundle import BundleError, list_versions, load_bundle, read_current, set_current, write_manifest

OBVIOUS = {
    "Portronics 20W USB-C fast phone charger with Type-C cable, compatible with iPhone and Android": "Electronics",
    "Men's 100% cotton casual slim fit full sleeve shirt, blue checks": "Clothing & Accessories",
    "The Silent Patient: a novel. Paperback edition, a gripping psychological thriller by Alex Michaelides": "Books",
    "Stainless steel bucket with handle, 16 litres, for bathroom and household cleaning": "Household",
}


def test_shipped_bundle_categorizes_obvious_products_without_tensorflow(shipped_bundle_dir):
    # A fresh interpreter, so that nothing else in the test session has imported TensorFlow.
    code = (
        "import json, sys\n"
        "from training.bundle import load_bundle\n"
        f"b = load_bundle({str(shipped_bundle_dir)!r})\n"
        f"texts = {list(OBVIOUS)!r}\n"
        "print(json.dumps({'cats': [r['category'] for r in b.predict(texts)],\n"
        "                  'tf': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["cats"] == list(OBVIOUS.values())
    assert result["tf"] is False and result["keras"] is False


def test_predict_shape_and_probabilities(shipped_bundle_dir):
    b = load_bundle(shipped_bundle_dir)
    out = b.predict(list(OBVIOUS))
    assert b.version == shipped_bundle_dir.name
    for r in out:
        assert set(r) == {"category", "confidence", "probabilities"}
        assert set(r["probabilities"]) == set(b.labels)
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-4
        assert r["confidence"] == max(r["probabilities"].values())
    assert b.predict([]) == []


def test_result_does_not_depend_on_batch(shipped_bundle_dir):
    """Same text alone, in a batch of short texts, and in a batch padded by a very long text."""
    b = load_bundle(shipped_bundle_dir)
    text = list(OBVIOUS)[0]
    alone = b.predict_proba([text])[0]
    short_batch = b.predict_proba(["bucket", text, "shirt"])[1]
    long_neighbour = " ".join(f"word{i}" for i in range(5000))
    padded_batch = b.predict_proba([long_neighbour, text] + ["novel"] * 300)[1]
    np.testing.assert_allclose(alone, short_batch, atol=1e-6)
    np.testing.assert_allclose(alone, padded_batch, atol=1e-6)


def test_missing_file_is_refused(bundle_copy):
    (bundle_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer.json is missing"):
        load_bundle(bundle_copy)


def test_altered_file_is_refused(bundle_copy):
    with open(bundle_copy / "model.onnx", "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(BundleError, match="checksum mismatch for model.onnx"):
        load_bundle(bundle_copy)


def test_missing_manifest_is_refused(bundle_copy):
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(bundle_copy)


def test_inconsistent_labels_are_refused(bundle_copy):
    (bundle_copy / "labels.json").write_text(json.dumps(["Books", "Household"]))
    write_manifest(bundle_copy)  # checksums fine, contents inconsistent
    with pytest.raises(BundleError, match="4 outputs but labels.json names 2"):
        load_bundle(bundle_copy)


def test_inconsistent_tokenizer_is_refused(bundle_copy):
    tok = json.loads((bundle_copy / "tokenizer.json").read_text())
    tok["vocab"] = tok["vocab"][:10]
    (bundle_copy / "tokenizer.json").write_text(json.dumps(tok))
    write_manifest(bundle_copy)
    with pytest.raises(BundleError, match="tokenizer has 12 ids"):
        load_bundle(bundle_copy)


def test_garbage_onnx_is_refused(bundle_copy):
    (bundle_copy / "model.onnx").write_bytes(b"not an onnx model")
    write_manifest(bundle_copy)
    with pytest.raises(BundleError, match="model.onnx does not load"):
        load_bundle(bundle_copy)


def test_current_pointer(bundle_copy):
    models = bundle_copy.parent
    with pytest.raises(BundleError, match="no 'current' pointer"):
        read_current(models)
    set_current(models, bundle_copy.name)
    assert read_current(models) == bundle_copy.name
    assert list_versions(models) == [bundle_copy.name]
    (models / "current").write_text("../etc\n")
    with pytest.raises(BundleError, match="invalid 'current' pointer"):
        read_current(models)


def test_set_current_refuses_incomplete_bundle(bundle_copy):
    (bundle_copy / "model.onnx").unlink()
    with pytest.raises(BundleError):
        set_current(bundle_copy.parent, bundle_copy.name)
    assert not (bundle_copy.parent / "current").exists()


def test_warm_up_runs_and_changes_no_result(shipped_bundle_dir):
    b = load_bundle(shipped_bundle_dir)
    before = b.predict_proba(list(OBVIOUS))
    b.warm_up(batch=8, calls=1)
    np.testing.assert_array_equal(before, b.predict_proba(list(OBVIOUS)))
