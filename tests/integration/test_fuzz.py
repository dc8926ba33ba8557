"""Hostile input, generated: Schemathesis from /openapi.json, Hypothesis on the JSON body parser and
validation and on the catalog CSV/JSONL reader. Zero 5xx; every 4xx is a problem naming the problem.

Marked ``fuzz``. The budget is ``CATEGORIZER_FUZZ_EXAMPLES`` generated inputs in total (default 300:
well under 2 minutes); the dedicated run uses 10000 or more::

    CATEGORIZER_FUZZ_EXAMPLES=10000 pytest -m fuzz -s tests/integration/test_fuzz.py

The app runs in-process (WSGI) on the session's Redis with a real worker (so /readyz is ready), with the
queue-depth limit lifted (the fuzzer queues thousands of jobs). Counts are printed at the end (``-s``).
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from web import create_app
from web.catalog_ingest import CatalogRefused, Options, open_catalog
from web.problems import Problem
from web.validation import validate_job_body

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

TOTAL = int(os.environ.get("CATEGORIZER_FUZZ_EXAMPLES", "300"))
# shares of the budget: API operations (Schemathesis), raw bodies, JSON validation, catalog rows
API_SHARE, RAW_SHARE, VALIDATION_SHARE, CSV_SHARE = 0.4, 0.2, 0.2, 0.2
SEEN: Counter = Counter()
PT = "urn:categorizer:problem:"
SUPPRESS = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]


def examples(share: float, parts: int = 1) -> int:
    return max(5, int(TOTAL * share / parts))


@pytest.fixture(scope="module")
def fuzz_app(redis_url, worker):
    app = create_app(
        {"REDIS_URL": redis_url, "MAX_QUEUE_DEPTH": 10**9, "TESTING": True, "MAX_CONTENT_LENGTH": 2 * 1024 * 1024}
    )
    yield app
    print(f"\nfuzz figures: {dict(SEEN)}")


def check_answer(status: int, content_type: str, body: bytes, what: str) -> None:
    SEEN["requests"] += 1
    SEEN[f"{status // 100}xx"] += 1
    assert status < 500, f"{what}: {status} {body[:300]!r}"
    if status >= 400:
        assert content_type.startswith("application/problem+json"), f"{what}: {status} {content_type}"
        problem = json.loads(body)
        assert problem["status"] == status
        assert problem["type"].startswith(PT) or problem["type"] == "about:blank"
        assert problem["title"] and problem.get("detail"), problem


@pytest.fixture(scope="module")
def api_cases(fuzz_app):
    """One Hypothesis strategy of Schemathesis cases over every operation of the published document."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)
    strategies = [result.ok().as_strategy() for result in schema.get_all_operations()]
    assert len(strategies) >= 5
    return st.one_of(strategies)


@given(data=st.data())
@settings(
    max_examples=examples(API_SHARE),
    deadline=None,
    suppress_health_check=[*SUPPRESS, HealthCheck.function_scoped_fixture],
)
def test_api_from_openapi(api_cases, data):
    case = data.draw(api_cases)
    response = case.call()
    check_answer(
        response.status_code,
        {k.lower(): v for k, v in response.headers.items()}.get("content-type", [""])[0],
        response.content,
        f"{case.method} {case.formatted_path} {case.query} {case.headers}",
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
PRODUCT = st.fixed_dictionaries(
    {"text": st.one_of(st.text(), JSON)},
    optional={"id": st.one_of(st.text(max_size=300), st.integers(), JSON)},
)
BODY = st.one_of(JSON, st.fixed_dictionaries({"products": st.one_of(st.lists(PRODUCT, max_size=8), JSON)}))


@given(
    raw=st.one_of(st.binary(max_size=2000), BODY.map(lambda b: json.dumps(b).encode())),
    ctype=st.sampled_from(
        ["application/json", "application/json; charset=latin-1", "text/plain", "application/problem+json", ""]
    ),
)
@settings(max_examples=examples(RAW_SHARE), deadline=None, suppress_health_check=SUPPRESS)
def test_raw_bodies(fuzz_app, raw, ctype):
    resp = fuzz_app.test_client().post("/v1/jobs", data=raw, headers={"Content-Type": ctype} if ctype else {})
    check_answer(resp.status_code, resp.content_type or "", resp.data, repr(raw[:100]))


@given(body=BODY)
@settings(max_examples=examples(VALIDATION_SHARE), deadline=None, suppress_health_check=SUPPRESS)
def test_json_validation(body):
    SEEN["validated_bodies"] += 1
    try:
        products = validate_job_body(body, max_products=5, max_text_length=50)
    except Problem as problem:
        assert problem.status in (422,) and problem.detail
        assert problem.extra.get("errors") and all(
            e["pointer"].startswith("/") or e["pointer"] == "" for e in problem.extra["errors"]
        )
        return
    assert 1 <= len(products) <= 5
    assert all(isinstance(p["text"], str) and p["text"].strip() and len(p["text"]) <= 50 for p in products)


CELL = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(['"', '""', "\r\n", ",", "\x00", "\ufeff"])
CSV_ROWS = st.lists(st.lists(CELL, min_size=0, max_size=4), min_size=1, max_size=20)


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    import csv

    csv.writer(out).writerows([["id", "text"], *rows])
    return out.getvalue().encode("utf-8", "surrogatepass")


@given(
    data=st.one_of(
        CSV_ROWS.map(_csv),
        st.binary(max_size=3000),
        CSV_ROWS.map(lambda r: ("id,text\n" + "\n".join(",".join(c) for c in r)).encode("utf-8", "surrogatepass")),
    ),
    fmt=st.sampled_from([None, "csv", "jsonl"]),
)
@settings(max_examples=examples(CSV_SHARE), deadline=None, suppress_health_check=SUPPRESS)
def test_catalog_reader(data, fmt):
    SEEN["catalog_uploads"] += 1
    try:
        reader = open_catalog(io.BytesIO(data), Options(format=fmt, max_text_length=30))
    except CatalogRefused as refused:
        assert refused.code and refused.detail
        return
    for row in reader:
        SEEN["catalog_rows"] += 1
        assert (row.text is None) != (row.error is None), row
        if row.text is not None:
            assert row.text.strip() and len(row.text) <= 30
        else:
            assert ":" in row.error
