"""Typed settings of the web tier, checked once at start-up.

``CATEGORIZER_*`` environment values reach the config as JSON when they parse as JSON and as
strings otherwise (``MICROBATCH=off`` would be the truthy string ``"off"``, ``MAX_PRODUCTS=1k``
would fail on every request). ``check_config`` coerces every typed setting to its type and checks
its range, so that a bad value stops the service at start-up with a message naming it, instead
of turning into 500s (or quietly wrong behaviour) later.
"""

from __future__ import annotations

import math

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

#: setting -> (type, minimum); None = unbounded (booleans)
RULES: dict[str, tuple[type, float | None]] = {
    "MAX_PRODUCTS": (int, 1),
    "MAX_TEXT_LENGTH": (int, 1),
    "MAX_CONTENT_LENGTH": (int, 1),
    "JOB_TTL": (int, 1),
    "IDEMPOTENCY_TTL": (int, 1),
    "MAX_WAIT": (float, 0),
    "MAX_QUEUE_DEPTH": (int, 1),
    "MICROBATCH": (bool, None),
    "MICROBATCH_MAX_PRODUCTS": (int, 1),
    "MAX_BATCH_JOBS": (int, 1),
    "MAX_LOOKUP_RESULTS": (int, 1),
    "RETRY_AFTER": (int, 1),
    "CATALOG_CHUNK_SIZE": (int, 1),
    "CATALOG_WINDOW": (int, 0),
    "MAX_CATALOG_ROWS": (int, 1),
    "MAX_CONCURRENT_CATALOGS": (int, 0),
    "MAX_CATALOG_BYTES": (int, 1),
    "CATALOG_MAX_TEXT_LENGTH": (int, 1),
    "CATALOG_TTL": (int, 1),
    "REVIEW_THRESHOLD": (float, 0),  # above 1: every result needs review
    "REDIS_SOCKET_TIMEOUT": (float, 0.001),
    "RATE_LIMIT_PER_MINUTE": (float, 0),
    "RATE_LIMIT_BURST": (float, 0),
    "WORKER_TTL": (float, 0.001),
}


def _coerce(name: str, value: object, kind: type) -> object:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | str) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise ValueError(f"CATEGORIZER_{name}={value!r}: expected true or false")
    if isinstance(value, bool):
        raise ValueError(f"CATEGORIZER_{name}={value!r}: expected a number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"CATEGORIZER_{name}={value!r}: expected a number") from None
    if not math.isfinite(number):
        raise ValueError(f"CATEGORIZER_{name}={value!r}: expected a finite number")
    if kind is int:
        if number != int(number):
            raise ValueError(f"CATEGORIZER_{name}={value!r}: expected a whole number")
        return int(number)
    return int(number) if number.is_integer() else number  # 30, not 30.0, in messages and the spec


def check_config(config: dict) -> None:
    """Coerce and check the typed settings in place. Raises ``ValueError`` naming the bad one."""
    for name, (kind, low) in RULES.items():
        if name not in config:
            continue
        value = _coerce(name, config[name], kind)
        if low is not None and value < low:  # type: ignore[operator]
            raise ValueError(f"CATEGORIZER_{name}={config[name]!r}: must be at least {low}")
        config[name] = value
    burst = config.get("RATE_LIMIT_BURST")
    if burst and burst < 1:  # a bucket that never holds a whole token refuses every request
        raise ValueError(f"CATEGORIZER_RATE_LIMIT_BURST={burst!r}: must be 0 (the per-minute rate) or at least 1")
