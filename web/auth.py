"""Access control for ``/v1/``: optional API keys, ownership of records, optional rate limiting.

API keys (off unless configured)
    ``CATEGORIZER_API_KEYS="alice:key1,bob:key2"`` and/or ``CATEGORIZER_API_KEYS_FILE=/path``
    (one ``name:key`` per line; blank lines and ``#`` comments ignored). A client sends
    ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Keys are compared with
    ``hmac.compare_digest`` against every configured key (no early exit that would tell how
    many keys exist or which one nearly matched). A missing or wrong key answers ``401``
    (``urn:categorizer:problem:unauthorized``) with ``WWW-Authenticate: Bearer``.

Ownership
    With keys on, ``g.client_id`` is the key's *name*; records created by a request carry it as
    ``owner``. ``check_owner(record)`` answers ``False`` for another client's record, and the views
    answer ``404`` exactly as for an unknown id (no 403: ids of others are not even confirmed).
    With keys off, ``g.client_id`` is ``None`` and every record is visible (one trusted tenant).

Rate limiting (off unless ``RATE_LIMIT_PER_MINUTE`` > 0)
    A token bucket per client in Redis (one Lua script, Redis ``TIME``: all web processes share
    it): ``RATE_LIMIT_PER_MINUTE`` tokens per minute, bursts of up to ``RATE_LIMIT_BURST``
    (default: the per-minute rate). The client is the key name, or the remote address when keys
    are off. An empty bucket answers ``429`` (``rate-limited``) with ``Retry-After`` (seconds
    until a token is back), before the request does any work.

Open routes (no key, no rate limit): everything outside ``/v1/``: ``/healthz`` and ``/readyz``
(probes of orchestrators carry no credentials), ``/openapi.json`` (the public contract),
``/metrics`` (scraped from the internal network) and the web page ``/``.
"""

from __future__ import annotations

import hmac
import math
from pathlib import Path

from flask import Flask, current_app, g, request

from web.problems import Problem

PROTECTED_PREFIX = "/v1/"
RATE_KEY_PREFIX = "categorizer:ratelimit:"

# KEYS[1]: bucket hash. ARGV: capacity, refill per second. Returns {allowed 0/1, ms until a token}.
_TOKEN_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, wait_ms}
"""


def parse_keys(text: str) -> dict[str, str]:
    """``"name:key,name2:key2"`` (or one per line) -> ``{key: name}``. Raises ValueError."""
    keys: dict[str, str] = {}
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        name, sep, key = item.partition(":")
        name, key = name.strip(), key.strip()
        if not sep or not name or not key:
            raise ValueError(f"API key entries are 'name:key'; got an entry without both ({name or '?'}:...)")
        if key in keys:
            raise ValueError(f"the same API key is configured for '{keys[key]}' and '{name}'")
        keys[key] = name
    return keys


def load_keys(config) -> dict[str, str]:
    """The configured keys, ``{key: client name}``; empty when authentication is off."""
    text = str(config.get("API_KEYS") or "")
    path = config.get("API_KEYS_FILE")
    if path:
        text += "\n" + Path(path).read_text(encoding="utf-8")
    return parse_keys(text)


def _presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key") or None


def identify(keys: dict[str, str], presented: str | None) -> str | None:
    """The client name of ``presented``, comparing it with every key in constant time."""
    if presented is None:
        return None
    # WSGI hands header values over as latin-1 text: these are the bytes the client sent, which
    # for a key configured with non-ASCII characters are its UTF-8 bytes
    try:
        given = presented.encode("latin-1")
    except UnicodeEncodeError:
        given = presented.encode("utf-8", "surrogateescape")
    found = None
    for key, name in keys.items():
        if hmac.compare_digest(given, key.encode("utf-8")):
            found = name
    return found


def _authenticate() -> None:
    keys = current_app.extensions["categorizer.auth"]
    g.client_id = None
    if not keys:
        return
    client = identify(keys, _presented_key())
    if client is None:
        detail = "an API key is required" if _presented_key() is None else "the API key is not valid"
        raise Problem(
            "unauthorized",
            f"{detail}: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="categorizer"'},
        )
    g.client_id = client


def _rate_limit() -> None:
    cfg = current_app.config
    per_minute = float(cfg.get("RATE_LIMIT_PER_MINUTE") or 0)
    if per_minute <= 0:
        return
    burst = float(cfg.get("RATE_LIMIT_BURST") or per_minute)
    client = g.client_id or f"addr:{request.remote_addr}"
    from web.api import services

    script = current_app.extensions["categorizer.ratelimit"]
    if script is None:
        script = services().store.redis.register_script(_TOKEN_BUCKET)
        current_app.extensions["categorizer.ratelimit"] = script
    allowed, wait_ms = script(keys=[RATE_KEY_PREFIX + client], args=[burst, per_minute / 60.0])
    if not int(allowed):
        retry = max(1, math.ceil(int(wait_ms) / 1000))
        raise Problem(
            "rate-limited",
            f"more than {per_minute:g} requests per minute (bursts of {burst:g}); retry in {retry} s",
            headers={"Retry-After": retry},
        )


def owner_of(record: dict | None) -> str | None:
    """The client that created a record (``owner`` field), or None."""
    return (record or {}).get("owner") or None


def check_owner(record: dict | None) -> bool:
    """True when the current client may see ``record`` (always, when keys are off)."""
    if record is None:
        return False
    client = g.get("client_id")
    if client is None:
        return True
    # bytes: compare_digest refuses str with non-ASCII characters (a client named "müller")
    return hmac.compare_digest(str(owner_of(record) or "").encode("utf-8"), client.encode("utf-8"))


def current_client() -> str | None:
    """The current client's name (with keys on), to store as a new record's ``owner``."""
    return g.get("client_id")


def init_auth(app: Flask) -> None:
    """Load keys (fails at start-up on a malformed key list) and install the before_request hook."""
    app.extensions["categorizer.auth"] = load_keys(app.config)
    app.extensions["categorizer.ratelimit"] = None

    @app.before_request
    def _access():
        g.client_id = None
        if not request.path.startswith(PROTECTED_PREFIX):
            return None
        _authenticate()
        _rate_limit()
        return None


# -- concurrent catalogs per client ----------------------------------------------------------------

ACTIVE_CATALOGS_PREFIX = "categorizer:catalogs:active:"


def claim_catalog_slot(client_redis, catalog_id: str, limit: int, is_active) -> None:
    """Count ``catalog_id`` among the current client's unfinished catalogs, or raise ``429``
    ``too-many-catalogs`` when ``limit`` of them are still unfinished (``limit`` <= 0: no limit).

    The set of a client's catalogs lives in Redis (shared by all web processes); finished,
    deleted or expired ones are pruned here with ``is_active(catalog_id) -> bool``, so no worker
    has to report back. Checked before the upload is read: a refused client sends no rows.
    """
    if limit <= 0:
        return
    client = current_client() or f"addr:{request.remote_addr}"
    key = ACTIVE_CATALOGS_PREFIX + client
    for member in client_redis.smembers(key):
        if not is_active(member):
            client_redis.srem(key, member)
    active = client_redis.scard(key)
    if active >= limit:
        raise Problem(
            "too-many-catalogs",
            f"{active} of your catalogs are still being processed (limit {limit}); retry when one finishes",
            headers={"Retry-After": current_app.config.get("RETRY_AFTER", 5)},
            limit=limit,
        )
    client_redis.sadd(key, catalog_id)
    client_redis.expire(key, int(current_app.config.get("CATALOG_TTL", 7 * 86400)))
