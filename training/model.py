"""The Keras LSTM categorizer. Imports TensorFlow/Keras: training only."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
from keras import layers  # noqa: E402


def build_model(
    vocab_size: int,
    num_classes: int,
    embed_dim: int = 64,
    lstm_units: int = 64,
    dense_units: int = 64,
    dropout: float = 0.3,
    learning_rate: float = 2e-3,
    pooling: str = "last",
    embed_dropout: float = 0.0,
) -> keras.Model:
    """Embedding -> Bidirectional LSTM -> Dense(relu) -> Dense(softmax).

    ``mask_zero=True`` makes the LSTMs skip the padding, so a text's result does not depend
    on how far it is padded. The ONNX export reproduces this with the ONNX LSTM operator's
    ``sequence_lens`` input, which keeps ONNX Runtime's fused LSTM kernel.

    ``pooling="last"`` feeds the last state of each direction to the dense layers (the seed's
    design); ``"last+mean"`` also feeds the mean of the BiLSTM outputs over the real tokens.
    """
    if pooling not in ("last", "last+mean"):
        raise ValueError(f"unknown pooling {pooling!r}")
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    x = layers.Embedding(vocab_size, embed_dim, mask_zero=True, name="embedding")(ids)
    if embed_dropout:
        x = layers.SpatialDropout1D(embed_dropout, name="embed_dropout")(x)
    if pooling == "last":
        x = layers.Bidirectional(layers.LSTM(lstm_units, name="lstm"), name="bilstm")(x)
    else:
        seq, h_fwd, _, h_bwd, _ = layers.Bidirectional(
            layers.LSTM(lstm_units, return_sequences=True, return_state=True, name="lstm"), name="bilstm"
        )(x)
        mean = layers.GlobalAveragePooling1D(name="mean_pool")(seq)  # mask-aware: real tokens only
        x = layers.Concatenate(name="features")([h_fwd, h_bwd, mean])
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    out = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(ids, out, name="categorizer_bilstm")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
