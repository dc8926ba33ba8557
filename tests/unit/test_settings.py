"""Typed settings (web.settings): CATEGORIZER_* values are coerced, and a bad one stops start-up."""

from __future__ import annotations

import pytest

from web import create_app

DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize(
    "name, raw, expected",
    [
        ("MICROBATCH", "off", False),
        ("MICROBATCH", "False", False),
        ("MICROBATCH", "yes", True),
        ("MICROBATCH", "1", True),
        ("MAX_PRODUCTS", "500", 500),
        ("MAX_PRODUCTS", "500.0", 500),
        ("REVIEW_THRESHOLD", "0.75", 0.75),
        ("RATE_LIMIT_BURST", "0", 0),
        ("MAX_WAIT", "12.5", 12.5),
    ],
)
def test_environment_values_are_coerced(monkeypatch, name, raw, expected):
    monkeypatch.setenv(f"CATEGORIZER_{name}", raw)
    value = create_app({"REDIS_URL": DEAD_REDIS}).config[name]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "name, raw, message",
    [
        ("MICROBATCH", "maybe", "expected true or false"),
        ("MAX_PRODUCTS", "1k", "expected a number"),
        ("MAX_PRODUCTS", "2.5", "expected a whole number"),
        ("JOB_TTL", "0", "must be at least 1"),
        ("MAX_QUEUE_DEPTH", "big", "expected a number"),
        ("RATE_LIMIT_PER_MINUTE", "lots", "expected a number"),
        ("RATE_LIMIT_BURST", "0.5", "at least 1"),
        ("RETRY_AFTER", "2.5", "expected a whole number"),
        ("REVIEW_THRESHOLD", "-0.1", "must be at least 0"),
        ("MAX_WAIT", "inf", "finite"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_setting(monkeypatch, name, raw, message):
    monkeypatch.setenv(f"CATEGORIZER_{name}", raw)
    with pytest.raises(ValueError, match=message) as err:
        create_app({"REDIS_URL": DEAD_REDIS})
    assert f"CATEGORIZER_{name}=" in str(err.value)


def test_worker_settings_accept_whole_floats_and_name_a_bad_value(monkeypatch):
    from worker.celery_app import _env_int, _env_seconds

    monkeypatch.setenv("CATEGORIZER_X", "3600.0")
    assert _env_int("CATEGORIZER_X", 1) == 3600 and _env_seconds("CATEGORIZER_X", 1) == 3600
    monkeypatch.setenv("CATEGORIZER_X", "0")
    assert _env_seconds("CATEGORIZER_X", 5) is None
    for bad in ("soon", "-1", "2.5"):
        monkeypatch.setenv("CATEGORIZER_X", bad)
        with pytest.raises(ValueError, match="CATEGORIZER_X="):
            _env_int("CATEGORIZER_X", 1)
