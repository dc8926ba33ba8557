"""The catalog web endpoints and store against a private redis-server (no worker): failure
cleanup, truncated downloads, a catalog deleted at the end of its upload, unencodable rows."""

from __future__ import annotations

import json
import shutil

import pytest
import redis

from web import create_app
from web.services import RedisServer
from worker.catalog_store import CatalogStore, chunk_key, handoff_key, out_key, pending_key

PT = "urn:categorizer:problem:"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    yield server.url()
    server.stop()


@pytest.fixture
def client_redis(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    return client


@pytest.fixture
def app(redis_url, client_redis):
    return create_app({"REDIS_URL": redis_url, "TESTING": True, "CATALOG_CHUNK_SIZE": 2, "CATALOG_WINDOW": 1})


def catalog_keys(client: redis.Redis, catalog_id: str) -> set[str]:
    return set(client.scan_iter(f"categorizer:catalog:{catalog_id}*"))


def test_fail_deletes_inputs_pending_and_handoff_and_never_recreates(client_redis):
    store = CatalogStore(client_redis)
    store.create("c1", 3600, window=1)
    for n in range(3):
        store.add_chunk("c1", n, [[n + 1, None, f"text {n}", None]], 3600, window=1)
    client_redis.hset(handoff_key("c1"), "0", "1")
    client_redis.hset(out_key("c1"), "0", "[]")
    assert client_redis.llen(pending_key("c1")) == 2
    assert store.fail("c1", "the upload could not be read") is True
    record = store.get("c1")
    assert (record["status"], record["error"]) == ("failed", "the upload could not be read")
    assert catalog_keys(client_redis, "c1") == {"categorizer:catalog:c1"}  # the record alone, with its TTL
    assert client_redis.ttl("categorizer:catalog:c1") > 0
    assert store.fail("c1", "again") is False and store.get("c1")["error"] == "the upload could not be read"

    # deleted before the failure is recorded: nothing is recreated
    store.create("c2", 3600)
    store.add_chunk("c2", 0, [[1, None, "t", None]], 3600)
    assert store.purge("c2")
    assert store.fail("c2", "late") is False
    assert catalog_keys(client_redis, "c2") == set()
    assert not client_redis.exists(chunk_key("c2", 0))


def test_an_interrupted_upload_frees_its_chunks(app, client_redis, monkeypatch):
    """The web tier fails the catalog when the body breaks off; its chunks go at once."""
    from werkzeug.exceptions import ClientDisconnected

    import web.catalog_ingest as ingest

    real_next = ingest._Lines.__next__
    served = {"lines": 0}

    def breaking_next(self):
        served["lines"] += 1
        if served["lines"] > 8:
            raise ClientDisconnected()
        return real_next(self)

    monkeypatch.setattr(ingest._Lines, "__next__", breaking_next)
    body = b"id,text\n" + b"".join(b"%d,product %d\n" % (i, i) for i in range(20))
    resp = app.test_client().post("/v1/catalogs", data=body, content_type="text/csv")
    assert resp.status_code == 400 and resp.get_json()["type"] == PT + "upload-interrupted"
    (record_key,) = client_redis.scan_iter("categorizer:catalog:*")
    catalog_id = record_key.rsplit(":", 1)[1]
    assert client_redis.hget(record_key, "status") == "failed"
    assert int(client_redis.hget(record_key, "chunks")) >= 2  # chunks were stored, then deleted
    assert catalog_keys(client_redis, catalog_id) == {record_key}


def test_a_download_whose_results_disappear_breaks_off(app, client_redis):
    from web.catalogs import ResultsTruncated

    store = CatalogStore(client_redis)
    store.create("00000000-0000-4000-8000-000000000001", 3600)
    cid = "00000000-0000-4000-8000-000000000001"
    client_redis.hset(f"categorizer:catalog:{cid}", mapping={"status": "succeeded", "chunks": 2, "labels": "[]"})
    client_redis.hset(out_key(cid), "0", json.dumps([[1, "a", None, None, None, "v1", "empty_text: x"]]))
    resp = app.test_client().get(f"/v1/catalogs/{cid}/results", buffered=False)
    assert resp.status_code == 200
    with pytest.raises(ResultsTruncated):
        b"".join(resp.response)  # chunk 1 is missing: no clean end of the body


def test_a_catalog_deleted_before_the_end_of_its_upload_is_404(app, client_redis, monkeypatch):
    store_cls = CatalogStore
    real_finish = store_cls.finish_ingest

    def delete_then_finish(self, catalog_id):
        self.purge(catalog_id)
        return real_finish(self, catalog_id)

    monkeypatch.setattr(store_cls, "finish_ingest", delete_then_finish)
    resp = app.test_client().post("/v1/catalogs", data=b"id,text\n1,shirt\n", content_type="text/csv")
    assert resp.status_code == 404, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json" and resp.get_json()["type"] == PT + "catalog-not-found"


def test_rows_redis_cannot_encode_are_stored_as_row_errors(app, client_redis, monkeypatch):
    """Backstop: a row that slipped through the reader's checks is stored as an error, not a 500."""
    import web.catalog_ingest as ingest

    real_row = ingest.CatalogReader._row

    def unchecked_row(self, ident, text):
        row = real_row(self, ident, text)
        return ingest.Row(row.row, row.id, "\ud800" + text, None) if text == "slipped" else row

    monkeypatch.setattr(ingest.CatalogReader, "_row", unchecked_row)
    resp = app.test_client().post("/v1/catalogs", data=b"id,text\n1,ok\n2,slipped\n", content_type="text/csv")
    assert resp.status_code == 202, resp.get_data(as_text=True)
    cid = resp.get_json()["catalog_id"]
    rows = json.loads(client_redis.get(chunk_key(cid, 0)))
    assert rows[0] == [1, "1", "ok", None]
    assert rows[1][:3] == [2, "2", None] and rows[1][3].startswith("invalid_encoding")


@pytest.mark.parametrize(
    "body",
    [b'{"id": "1", "text": "\\ud800 shirt"}\n', b'{"id": "\\ud800", "text": "shirt"}\n', b"id,text\n1,ok\nbad\xff\n"],
)
def test_unencodable_input_is_a_row_error_not_a_500(app, client_redis, body):
    resp = app.test_client().post("/v1/catalogs", data=body)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert resp.get_json()["total"] == body.count(b"\n") - body.startswith(b"id,")


@pytest.mark.parametrize("failure", ["no_model", "redis_error"])
def test_a_chunk_that_fails_for_good_fails_its_rows_and_the_catalog_finishes(client_redis, monkeypatch, failure):
    """Retries exhausted (no model loaded) or an error that is not retried: Celery acknowledges the
    failed task, so its rows are stored as failed; the catalog finishes, every row accounted for."""
    from worker import catalog_tasks, model
    from worker.cache import LocalCache, ResultCache

    store = CatalogStore(client_redis)
    monkeypatch.setattr(catalog_tasks, "_services", lambda: (store, ResultCache(client_redis), LocalCache()))
    if failure == "no_model":
        monkeypatch.setattr(model.holder, "get", lambda: None)
    else:

        def broken(*args, **kwargs):
            raise redis.exceptions.ResponseError("OOM command not allowed when used memory > 'maxmemory'")

        monkeypatch.setattr(catalog_tasks, "categorize_rows", broken)
    store.create("c", 3600)
    store.add_chunk("c", 0, [[1, "a", "shirt", None], [2, "b", None, "empty_text: the text is empty"]], 3600)
    assert store.finish_ingest("c") == 0
    result = catalog_tasks.categorize_chunk.apply(args=("c", 0))  # eager: retries run at once
    assert result.failed()
    record = store.get("c")
    assert (record["status"], record["done"], record["failed_rows"], record["chunks_done"]) == (
        "succeeded",
        "2",
        "2",
        "1",
    )
    rows = json.loads(store.chunk_results("c", 0))["rows"]
    assert [r[:3] for r in rows] == [[1, "a", None], [2, "b", None]]
    expected = "RuntimeError: no model loaded" if failure == "no_model" else "ResponseError: OOM"
    assert rows[0][3].startswith("chunk_failed: " + expected) and "attempts" in rows[0][3]
    assert rows[1][3] == "empty_text: the text is empty"  # a bad row keeps its own reason
    assert not client_redis.exists(chunk_key("c", 0))
