"""Real services for integration tests: Redis, Celery worker processes, the Flask app over HTTP.

Reusable building blocks (later suites, e.g. catalogs, use the same ones):

``redis_url``        session Redis: a private redis-server on a free port (or, with
                     ``CATEGORIZER_TEST_SHARED_REDIS=1``, 127.0.0.1:6379 db
                     ``CATEGORIZER_TEST_REDIS_DB``, default 11, flushed before and after)
``redis_factory``    start private redis-servers (own port and data dir; safe to kill)
``worker_factory``   start real ``celery -A worker.celery_app worker`` processes
``worker``           one worker (prefork, concurrency 1) on ``redis_url``, shared by the session
``server_factory``   the real Flask app (``create_app``) served over HTTP by werkzeug in a thread
``live_server``      the default server on ``redis_url``
``api``              a requests session on ``live_server`` that checks every response against
                     the OpenAPI document the server publishes
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests
from werkzeug.serving import make_server

from tests.paths import SAVED_MODELS
from web import create_app
from web.services import ManagedProcess, RedisServer, redis_reachable, start_worker, wait_worker

SHARED_REDIS = "redis://127.0.0.1:6379"
TEST_DB = int(os.environ.get("CATEGORIZER_TEST_REDIS_DB", "11"))
HEARTBEAT_INTERVAL = "0.5"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The shipped models (``saved_models``), or ``CATEGORIZER_TEST_MODEL_DIR``."""
    models = Path(os.environ.get("CATEGORIZER_TEST_MODEL_DIR") or SAVED_MODELS)
    if not (models / "current").exists():
        pytest.skip(f"no model bundle ({models}/current)")
    return models


@pytest.fixture(scope="session")
def redis_factory(tmp_path_factory):
    """``start() -> RedisServer``: private redis-servers, stopped at the end of the session."""
    servers: list[RedisServer] = []

    def start(appendonly: bool = True) -> RedisServer:
        data = tmp_path_factory.mktemp("redis")
        server = RedisServer(data, appendonly=appendonly, log_path=data / "redis.log").start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_factory) -> str:
    # A private redis-server per test session by default: concurrent test sessions (several
    # developers, CI) never flush each other's data. CATEGORIZER_TEST_SHARED_REDIS=1 uses the
    # machine's Redis at 127.0.0.1:6379 (database CATEGORIZER_TEST_REDIS_DB) instead.
    override = os.environ.get("CATEGORIZER_TEST_REDIS_URL")
    if override:
        url = override
    elif os.environ.get("CATEGORIZER_TEST_SHARED_REDIS") == "1" and redis_reachable(f"{SHARED_REDIS}/0"):
        url = f"{SHARED_REDIS}/{TEST_DB}"
    else:
        url = redis_factory(appendonly=False).url()
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@dataclass
class WorkerHandle:
    process: ManagedProcess
    redis_url: str
    hostname: str
    log_path: Path

    def stop(self, timeout: float = 20) -> None:
        self.process.stop(timeout)

    def kill(self) -> None:
        self.process.kill()


@pytest.fixture(scope="session")
def worker_factory(tmp_path_factory, models_dir):
    """``start(redis_url, **kwargs) -> WorkerHandle``: a real Celery worker, ready (heartbeat seen)."""
    handles: list[WorkerHandle] = []

    def start(
        redis_url: str,
        *,
        queues: tuple[str, ...] = ("interactive",),
        concurrency: int = 1,
        pool: str = "prefork",
        env: dict | None = None,
        wait: bool = True,
    ) -> WorkerHandle:
        logs = tmp_path_factory.mktemp("worker")
        worker_env = {
            "CATEGORIZER_MODEL_DIR": str(models_dir),
            "CATEGORIZER_VISIBILITY_TIMEOUT": "10",
            "CATEGORIZER_HEARTBEAT_INTERVAL": HEARTBEAT_INTERVAL,
            "CATEGORIZER_ORT_THREADS": "1",
            **(env or {}),
        }
        proc = start_worker(
            redis_url,
            queues=queues,
            concurrency=concurrency,
            pool=pool,
            env=worker_env,
            log_path=logs / "worker.log",
        )
        handle = WorkerHandle(proc, redis_url, proc.hostname, logs / "worker.log")
        handles.append(handle)
        if wait:
            wait_worker(redis_url, proc.hostname, timeout=60, process=proc)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture(scope="session")
def worker(worker_factory, redis_url) -> WorkerHandle:
    return worker_factory(redis_url)


@dataclass
class LiveServer:
    url: str
    app: object
    _server: object = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(10)


@pytest.fixture(scope="session")
def server_factory():
    """``start(redis_url, **config) -> LiveServer``: ``create_app`` over real HTTP (threaded)."""
    servers: list[LiveServer] = []

    def start(redis_url: str, **config) -> LiveServer:
        app = create_app({"REDIS_URL": redis_url, "WORKER_TTL": 3, **config})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
        thread.start()
        live = LiveServer(f"http://127.0.0.1:{server.server_port}", app, server, thread)
        servers.append(live)
        return live

    yield start
    for live in servers:
        live.stop()


@pytest.fixture(scope="session")
def live_server(server_factory, redis_url, worker) -> LiveServer:
    return server_factory(redis_url)


# -- OpenAPI conformance of every response seen through ``api`` ---------------------------------


class OpenAPIChecker:
    """Asserts that a response's status (and body shape) is documented for its operation."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.routes = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path) for path in spec["paths"]]

    def _schema(self, ref_or_schema: dict) -> dict:
        ref = ref_or_schema.get("$ref")
        if ref:
            return self.spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        return ref_or_schema

    def check(self, resp: requests.Response) -> None:
        req = resp.request
        path = requests.utils.urlparse(req.url).path
        template = next((tpl for rx, tpl in self.routes if rx.match(path)), None)
        method = req.method.lower()
        if template is None or method not in self.spec["paths"][template]:
            # unknown route or method: the API answers 404/405 problems
            assert resp.status_code in (404, 405), (req.method, path, resp.status_code)
            assert resp.headers["Content-Type"].startswith("application/problem+json")
            return
        documented = self.spec["paths"][template][method]["responses"]
        status = str(resp.status_code)
        assert status in documented, f"{req.method} {template} answered {status}, not documented"
        content = documented[status].get("content", {})
        ctype = resp.headers.get("Content-Type", "").split(";")[0]
        assert ctype in content, f"{req.method} {template} {status}: {ctype} not documented"
        schema = content[ctype].get("schema")
        if schema:
            schema = self._schema(schema)
            body = resp.json()
            for name in schema.get("required", []):
                assert name in body, f"{req.method} {template} {status}: missing '{name}'"
            if "enum" in schema.get("properties", {}).get("type", {}):
                assert body["type"] in schema["properties"]["type"]["enum"]


@pytest.fixture(scope="session")
def openapi_spec(live_server) -> dict:
    return requests.get(live_server.url + "/openapi.json", timeout=5).json()


def checked_session(base_url: str, spec: dict) -> requests.Session:
    """A requests session with ``base_url`` prefixing and an OpenAPI check on every response."""
    checker = OpenAPIChecker(spec)

    class _Session(requests.Session):
        def request(self, method, url, *args, **kwargs):
            if url.startswith("/"):
                url = base_url + url
            kwargs.setdefault("timeout", 30)
            return super().request(method, url, *args, **kwargs)

    session = _Session()
    session.hooks["response"].append(lambda resp, *a, **k: checker.check(resp))
    return session


@pytest.fixture(scope="session")
def api(live_server, openapi_spec) -> requests.Session:
    return checked_session(live_server.url, openapi_spec)
