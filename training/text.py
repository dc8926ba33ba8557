"""Text normalization shared by data cleaning, de-duplication, tokenizing and caching."""

from __future__ import annotations

import html
import re

_WS = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Decode HTML entities and collapse whitespace (the text a model and a user see)."""
    return _WS.sub(" ", html.unescape(text)).strip()


def normalize_key(text: str) -> str:
    """The de-duplication / cache key: cleaned, lower-cased, whitespace collapsed."""
    return clean_text(text).lower()
