"""Export the Keras BiLSTM to ONNX and check parity with Keras.

The graph is written directly with ``onnx.helper`` from the trained weights rather than by
tracing (tf2onnx): a masked Keras LSTM traces into a generic loop that loses ONNX Runtime's
fused LSTM kernel (ENGINEERING.md: 8.8 ms instead of 0.6 ms for one text). Written by hand,
the Keras mask becomes the ONNX ``LSTM`` operator's ``sequence_lens`` input, so the export
is both masked and fast. The parity check against Keras guards the translation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.bundle import ONNX_INPUT_IDS, ONNX_INPUT_LENGTHS, ONNX_OUTPUT, make_session
from training.tokenizer import lengths

OPSET = 17
PARITY_TOLERANCE = 1e-4


class ParityError(RuntimeError):
    """The ONNX graph does not reproduce the Keras model's probabilities."""


def _onnx_gates(kernel: np.ndarray, units: int) -> np.ndarray:
    """Keras packs LSTM gates as (i, f, c, o) along the last axis; ONNX wants (i, o, f, c)."""
    i, f, c, o = (kernel[..., k * units : (k + 1) * units] for k in range(4))
    return np.concatenate([i, o, f, c], axis=-1)


def _has_layer(model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def keras_to_onnx(model, path: Path) -> None:
    """Write ``model`` (built by ``training.model.build_model``) as an ONNX graph to ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    emb = model.get_layer("embedding").get_weights()[0].astype(np.float32)
    bilstm = model.get_layer("bilstm")
    units = bilstm.forward_layer.units
    w_list, r_list, b_list = [], [], []
    for direction in (bilstm.forward_layer, bilstm.backward_layer):
        kernel, recurrent, bias = (w.astype(np.float32) for w in direction.get_weights())
        w_list.append(_onnx_gates(kernel, units).T)  # (4H, E)
        r_list.append(_onnx_gates(recurrent, units).T)  # (4H, H)
        # Keras has one bias; ONNX adds Wb and Rb, so Rb is zero.
        b_list.append(np.concatenate([_onnx_gates(bias, units), np.zeros(4 * units, np.float32)]))
    dense_w, dense_b = (w.astype(np.float32) for w in model.get_layer("dense").get_weights())
    out_w, out_b = (w.astype(np.float32) for w in model.get_layer("probabilities").get_weights())

    inits = [
        numpy_helper.from_array(emb, "embedding"),
        numpy_helper.from_array(np.stack(w_list), "lstm_W"),
        numpy_helper.from_array(np.stack(r_list), "lstm_R"),
        numpy_helper.from_array(np.stack(b_list), "lstm_B"),
        numpy_helper.from_array(dense_w, "dense_W"),
        numpy_helper.from_array(dense_b, "dense_B"),
        numpy_helper.from_array(out_w, "out_W"),
        numpy_helper.from_array(out_b, "out_B"),
        numpy_helper.from_array(np.array([0, 2 * units], dtype=np.int64), "flat_shape"),
    ]
    mean_pool = _has_layer(model, "mean_pool")
    nodes = [
        helper.make_node("Gather", ["embedding", ONNX_INPUT_IDS], ["embedded"], axis=0),  # (B, T, E)
        helper.make_node("Transpose", ["embedded"], ["time_major"], perm=[1, 0, 2]),  # (T, B, E)
        helper.make_node(
            "LSTM",
            ["time_major", "lstm_W", "lstm_R", "lstm_B", ONNX_INPUT_LENGTHS],
            # Y: (T, 2, B, H), zero past each row's length; Y_h: (2, B, H), last real state
            ["lstm_y" if mean_pool else "", "lstm_h"],
            direction="bidirectional",
            hidden_size=units,
        ),
        helper.make_node("Transpose", ["lstm_h"], ["h_batch"], perm=[1, 0, 2]),  # (B, 2, H)
        helper.make_node("Reshape", ["h_batch", "flat_shape"], ["h_concat"]),  # (B, 2H): [fwd, bwd]
    ]
    features = "h_concat"
    if mean_pool:
        # mean over real tokens = sum over time (padding outputs are zero) / length
        inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "time_axis"))
        inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "col_axis"))
        nodes += [
            helper.make_node("ReduceSum", ["lstm_y", "time_axis"], ["y_sum"], keepdims=0),  # (2, B, H)
            helper.make_node("Transpose", ["y_sum"], ["y_sum_b"], perm=[1, 0, 2]),
            helper.make_node("Reshape", ["y_sum_b", "flat_shape"], ["y_sum_flat"]),  # (B, 2H)
            helper.make_node("Cast", [ONNX_INPUT_LENGTHS], ["len_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["len_f", "col_axis"], ["len_col"]),  # (B, 1)
            helper.make_node("Div", ["y_sum_flat", "len_col"], ["y_mean"]),
            helper.make_node("Concat", ["h_concat", "y_mean"], ["features"], axis=1),
        ]
        features = "features"
    nodes += [
        helper.make_node("MatMul", [features, "dense_W"], ["dense_mm"]),
        helper.make_node("Add", ["dense_mm", "dense_B"], ["dense_pre"]),
        helper.make_node("Relu", ["dense_pre"], ["dense_out"]),
        helper.make_node("MatMul", ["dense_out", "out_W"], ["logits_mm"]),
        helper.make_node("Add", ["logits_mm", "out_B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [ONNX_OUTPUT], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "categorizer_bilstm",
        [
            helper.make_tensor_value_info(ONNX_INPUT_IDS, TensorProto.INT32, ["batch", "time"]),
            helper.make_tensor_value_info(ONNX_INPUT_LENGTHS, TensorProto.INT32, ["batch"]),
        ],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["batch", out_w.shape[1]])],
        initializer=inits,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="categorizer")
    onnx_model.ir_version = 8
    onnx.checker.check_model(onnx_model, full_check=True)
    onnx.save(onnx_model, str(path))


def check_parity(model, onnx_path: Path, ids: np.ndarray, batch_size: int = 256) -> float:
    """Largest |p_keras - p_onnx| over the encoded texts ``ids``; raises ``ParityError`` if > tolerance."""
    session = make_session(onnx_path, threads=0)
    worst = 0.0
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        p_keras = model.predict_on_batch(chunk)
        lens = lengths(chunk)
        (p_onnx,) = session.run([ONNX_OUTPUT], {ONNX_INPUT_IDS: chunk, ONNX_INPUT_LENGTHS: lens})
        worst = max(worst, float(np.abs(np.asarray(p_keras) - p_onnx).max()))
    if worst > PARITY_TOLERANCE:
        raise ParityError(f"ONNX export differs from Keras by {worst:.2e} (> {PARITY_TOLERANCE:.0e})")
    return worst
