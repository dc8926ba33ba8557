"""Result caches: identical texts cost one inference per model version.

Two levels, both keyed under the model version (a new version never reads an older one's entries):

* **Redis** (shared by every worker): ``categorizer:cache:<model_version>:<sha256(normalize_key(text))>``
  -> the text's probabilities (``pack_probabilities``: float32, base64, 24 characters for 4
  labels), expiring ``CATEGORIZER_CACHE_TTL`` seconds after it was written (default 7 days; 0
  disables both levels). Entries in the first format (JSON of a ``Bundle.predict`` dict) are
  still read.
* **Process-local** (``LocalCache``): ``blake2b-128(raw text)`` -> prediction, at most
  ``CATEGORIZER_LOCAL_CACHE_SIZE`` entries (default 65,536, ~15 MB; 0 = off), oldest half dropped
  when full. A repeated text then costs one hash and one dict lookup: no normalization, no Redis
  round trip, no JSON. It is what makes the duplicate rows of a catalog cheap.

A prediction is stored as its probabilities only, in the model version's label order, as
float32: that is what the model returns, so nothing is lost (``Bundle.predict``'s floats are
those float32 values), and ``category``/``confidence`` are the arg max and the max, exactly as
``Bundle.predict`` derives them (``prediction_of``).

``fast_normalize_key`` returns exactly ``training.text.normalize_key`` (tested on every Unicode
whitespace code point and the real sample) several times faster: ``str.split()`` and the regular
expression ``\\s`` both split on ``str.isspace()`` characters. Imports only ``redis``.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import sys
from array import array
from base64 import b64decode, b64encode
from itertools import islice

import redis

from training.text import normalize_key
from worker.jobstore import PREFIX

DEFAULT_TTL = 7 * 86400
DEFAULT_LOCAL_SIZE = 65536


def cache_ttl() -> int:
    value = os.environ.get("CATEGORIZER_CACHE_TTL")
    return int(value) if value not in (None, "") else DEFAULT_TTL


def local_cache_size() -> int:
    value = os.environ.get("CATEGORIZER_LOCAL_CACHE_SIZE")
    return max(0, int(value)) if value not in (None, "") else DEFAULT_LOCAL_SIZE


def fast_normalize_key(text: str) -> str:
    """``training.text.normalize_key(text)``, without the regular expression."""
    if "&" in text:
        text = html.unescape(text)
    return " ".join(text.split()).lower()


def text_digest(key: str) -> str:
    """SHA-256 (hex) of an already normalized text."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def raw_digest(text: str) -> bytes:
    """A 128-bit digest of the text as sent (the key of the process-local cache)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def cache_key(model_version: str, digest: str) -> str:
    return f"{PREFIX}cache:{model_version}:{digest}"


def probabilities_of(pred: dict, labels: list[str]) -> tuple[float, ...]:
    """The probabilities of a ``Bundle.predict`` dict, in label order."""
    probs = pred["probabilities"]
    return tuple(probs[label] for label in labels)


def prediction_of(probs, labels: list[str]) -> tuple[str, float]:
    """``(category, confidence)``: the first arg max and the max, as ``Bundle.predict``."""
    k = max(range(len(probs)), key=probs.__getitem__)
    return labels[k], probs[k]


def pack_probabilities(rows) -> str:
    """Rows of probabilities (each in label order) as base64 of little-endian float32."""
    flat = array("f", [p for row in rows for p in row])
    if sys.byteorder != "little":
        flat.byteswap()
    return b64encode(flat.tobytes()).decode("ascii")


def unpack_probabilities(packed: str, n_labels: int) -> list[list[float]]:
    """``pack_probabilities`` undone: the same floats (float32 values as Python floats)."""
    flat = array("f")
    flat.frombytes(b64decode(packed))
    if sys.byteorder != "little":
        flat.byteswap()
    values = flat.tolist()
    if not values:
        return []
    return [values[i : i + n_labels] for i in range(0, len(values), n_labels)]


def _decode(raw: str, labels: list[str]) -> tuple[float, ...] | None:
    if raw.startswith("{"):  # the first format (JSON of a Bundle.predict dict)
        return probabilities_of(json.loads(raw), labels)
    rows = unpack_probabilities(raw, len(labels))
    return tuple(rows[0]) if len(rows) == 1 else None


# KEYS: cache keys. ARGV: ttl, then one value per key.
_PUT_MANY = """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1], 'EX', ttl) end
return #KEYS
"""


class ResultCache:
    """The Redis level: one ``MGET`` per chunk to read, one script call to write."""

    def __init__(self, client: redis.Redis, ttl: int | None = None):
        self.redis = client
        self.ttl = cache_ttl() if ttl is None else int(ttl)
        self._put_many = client.register_script(_PUT_MANY)

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def get_many(self, model_version: str, digests: list[str], labels: list[str]) -> list[tuple | None]:
        if not self.enabled or not digests:
            return [None] * len(digests)
        raw = self.redis.mget([cache_key(model_version, d) for d in digests])
        return [_decode(v, labels) if v is not None else None for v in raw]

    def put_many(self, model_version: str, items: dict[str, tuple]) -> None:
        if not self.enabled or not items:
            return
        # one command (a pipeline of SETs costs redis-py far more per key)
        keys = [cache_key(model_version, d) for d in items]
        self._put_many(keys=keys, args=[self.ttl, *(pack_probabilities([p]) for p in items.values())])


class LocalCache:
    """The process-local level: ``raw_digest(text)`` -> probabilities, for one model version."""

    def __init__(self, max_entries: int | None = None):
        self.max_entries = local_cache_size() if max_entries is None else max(0, int(max_entries))
        self.version: str | None = None
        self.entries: dict[bytes, tuple] = {}

    def for_version(self, model_version: str) -> dict[bytes, tuple]:
        """The entries of ``model_version`` (another version's are dropped)."""
        if model_version != self.version:
            self.version, self.entries = model_version, {}
        return self.entries

    def put_many(self, model_version: str, items: dict[bytes, tuple]) -> None:
        if self.max_entries <= 0 or not items:
            return
        entries = self.for_version(model_version)
        entries.update(items)
        if len(entries) > self.max_entries:
            drop = len(entries) - self.max_entries // 2
            for key in list(islice(entries, drop)):
                del entries[key]


__all__ = [
    "LocalCache",
    "ResultCache",
    "cache_key",
    "fast_normalize_key",
    "normalize_key",
    "pack_probabilities",
    "prediction_of",
    "probabilities_of",
    "raw_digest",
    "text_digest",
    "unpack_probabilities",
]
