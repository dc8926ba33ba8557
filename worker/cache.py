"""Cross-catalog result cache: identical texts cost one inference per model version.

Key ``categorizer:cache:<model_version>:<sha256(normalize_key(text))>`` -> the prediction as
JSON (``{"category", "confidence", "probabilities"}``), expiring ``CATEGORIZER_CACHE_TTL``
seconds after it was written (default 7 days; 0 disables the cache). A new model version
never reads an older version's entries. Imports only ``redis`` and the text normalizer.
"""

from __future__ import annotations

import hashlib
import json
import os

import redis

from training.text import normalize_key
from worker.jobstore import PREFIX

DEFAULT_TTL = 7 * 86400


def cache_ttl() -> int:
    value = os.environ.get("CATEGORIZER_CACHE_TTL")
    return int(value) if value not in (None, "") else DEFAULT_TTL


def text_digest(key: str) -> str:
    """SHA-256 (hex) of an already normalized text."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def cache_key(model_version: str, digest: str) -> str:
    return f"{PREFIX}cache:{model_version}:{digest}"


class ResultCache:
    def __init__(self, client: redis.Redis, ttl: int | None = None):
        self.redis = client
        self.ttl = cache_ttl() if ttl is None else int(ttl)

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def get_many(self, model_version: str, digests: list[str]) -> list[dict | None]:
        if not self.enabled or not digests:
            return [None] * len(digests)
        raw = self.redis.mget([cache_key(model_version, d) for d in digests])
        return [json.loads(v) if v is not None else None for v in raw]

    def put_many(self, model_version: str, items: dict[str, dict]) -> None:
        if not self.enabled or not items:
            return
        pipe = self.redis.pipeline(transaction=False)
        for digest, prediction in items.items():
            pipe.set(cache_key(model_version, digest), json.dumps(prediction, separators=(",", ":")), ex=self.ttl)
        pipe.execute()


__all__ = ["ResultCache", "cache_key", "normalize_key", "text_digest"]
