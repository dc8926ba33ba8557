"""A small word tokenizer that training and serving share (pure Python + NumPy, JSON on disk).

``encode(texts)`` turns texts into a fixed-width ``int32`` matrix of token ids, padded with
0 at the end. Id 1 is the out-of-vocabulary token. Texts are read title first: only the
first ``seq_len`` tokens are kept, so a long description costs nothing beyond its prefix.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

PAD_ID = 0
OOV_ID = 1
FORMAT = "categorizer-word-tokenizer/1"

# Words are runs of letters/digits (Unicode aware); everything else separates them.
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
# Characters per kept token when pre-cutting long texts: generous, so the cut never bites
# into the kept tokens (a token plus its separators rarely exceeds ~12 characters).
_CHARS_PER_TOKEN = 24


class Tokenizer:
    """Maps texts to id sequences. Fit on training texts only."""

    def __init__(self, vocab: Sequence[str], seq_len: int, lowercase: bool = True) -> None:
        if seq_len < 1:
            raise ValueError("seq_len must be >= 1")
        self.vocab = list(vocab)
        self.seq_len = int(seq_len)
        self.lowercase = lowercase
        # ids 0 and 1 are reserved, so the first word gets id 2
        self._index = {w: i + 2 for i, w in enumerate(self.vocab)}

    @property
    def vocab_size(self) -> int:
        """Size of the id space, including the pad and OOV ids."""
        return len(self.vocab) + 2

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int, seq_len: int, min_count: int = 1) -> Tokenizer:
        """Keep the ``vocab_size - 2`` most frequent words (by document frequency).

        Only the words the model will see (the first ``seq_len`` of each text) are counted:
        a word that only occurs further on would get an embedding that training never updates.
        Words seen in fewer than ``min_count`` texts map to the OOV id.
        """
        counts: Counter[str] = Counter()
        probe = cls([], seq_len)
        for text in texts:
            counts.update(set(probe.tokens(text)))
        # Sort by frequency then word, so that fitting is deterministic.
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(ranked[: max(0, vocab_size - 2)], seq_len)

    def tokens(self, text: str, limit: int | None = -1) -> list[str]:
        """The words of ``text``; ``limit=-1`` keeps ``seq_len`` words, ``None`` keeps all."""
        if limit == -1:
            limit = self.seq_len
        if limit is not None:
            text = text[: limit * _CHARS_PER_TOKEN]
        if "&" in text:
            text = html.unescape(text)
        if self.lowercase:
            text = text.lower()
        words = _TOKEN.findall(text)
        return words if limit is None else words[:limit]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts as an ``int32`` array of shape ``(len(texts), seq_len)``.

        Rows are padded with 0 at the end. A text without any word becomes a single OOV
        token, so that every row has length >= 1.
        """
        out = np.zeros((len(texts), self.seq_len), dtype=np.int32)
        index_get = self._index.get
        for row, text in enumerate(texts):
            ids = [index_get(w, OOV_ID) for w in self.tokens(text)] or [OOV_ID]
            out[row, : len(ids)] = ids
        return out

    def to_dict(self) -> dict:
        return {"format": FORMAT, "seq_len": self.seq_len, "lowercase": self.lowercase, "vocab": self.vocab}

    @classmethod
    def from_dict(cls, data: dict) -> Tokenizer:
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported tokenizer format {data.get('format')!r}, expected {FORMAT!r}")
        return cls(data["vocab"], int(data["seq_len"]), bool(data.get("lowercase", True)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def lengths(ids: np.ndarray) -> np.ndarray:
    """Number of real (non-pad) tokens in each row of an encoded matrix, as ``int32``."""
    return np.count_nonzero(ids, axis=1).astype(np.int32)
