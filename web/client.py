"""A small Python client for the job API (requests based).

    from web.client import Client

    client = Client("http://127.0.0.1:8000")
    job = client.submit(["USB-C phone charger 20W", {"id": "sku-1", "text": "Cotton shirt"}])
    for result in job.wait(timeout=30).results():
        print(result["id"], result["category"], result["confidence"])

Errors answered by the API raise ``ProblemError`` carrying the RFC 9457 problem details.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable

import requests

FINAL_STATES = frozenset({"succeeded", "failed"})
#: the server clamps longer waits; one long-poll request never blocks longer than this
MAX_LONG_POLL = 30.0


class ProblemError(Exception):
    """The API answered with an error. ``problem`` is the problem-details body."""

    def __init__(self, status: int, problem: dict, headers: dict | None = None):
        self.status = status
        self.problem = problem
        self.headers = headers or {}
        self.type = problem.get("type", "about:blank")
        self.title = problem.get("title", "")
        self.detail = problem.get("detail", "")
        self.errors = problem.get("errors", [])
        super().__init__(f"{status} {self.title}: {self.detail}" if self.detail else f"{status} {self.title}")

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("Retry-After")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class JobFailed(Exception):
    """The job finished with status ``failed``."""


def _products(items: Iterable) -> list[dict]:
    out = []
    for item in items:
        if isinstance(item, str):
            out.append({"text": item})
        elif isinstance(item, dict):
            out.append(item)
        else:
            raise TypeError(f"a product is a text or a dict with 'text' (and 'id'), not {type(item).__name__}")
    return out


def api_session(api_key: str | None = None) -> requests.Session:
    """A session that sends the API key (argument, else ``CATEGORIZER_API_KEY``) when there is one."""
    session = requests.Session()
    api_key = api_key or os.environ.get("CATEGORIZER_API_KEY")
    if api_key:
        session.headers["Authorization"] = f"Bearer {api_key}"
    return session


class Client:
    """Talks to one categorizer service at ``base_url`` (API key: ``api_key`` or ``CATEGORIZER_API_KEY``)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        timeout: float = 10.0,
        session: requests.Session | None = None,
        api_key: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or api_session(api_key)

    def _request(self, method: str, path: str, timeout: float | None = None, **kwargs) -> requests.Response:
        resp = self.session.request(method, self.base_url + path, timeout=timeout or self.timeout, **kwargs)
        if resp.status_code >= 400:
            try:
                problem = resp.json()
            except ValueError:
                problem = {"title": resp.reason, "detail": resp.text[:500]}
            raise ProblemError(resp.status_code, problem, dict(resp.headers))
        return resp

    def submit(self, products: Iterable, idempotency_key: str | None = None, retries: int = 3) -> Job:
        """Submit products (texts, or dicts with ``text`` and optional ``id``). Returns the Job.

        The POST carries an ``Idempotency-Key`` (random unless given), so that it is retried
        safely after a connection error or a ``503`` (waiting ``Retry-After``), up to ``retries``
        times.
        """
        body = {"products": _products(products)}
        resp = self._post_retrying("/v1/jobs", body, idempotency_key or str(uuid.uuid4()), retries)
        data = resp.json()
        return Job(self, data["job_id"], data)

    def submit_many(
        self,
        jobs: Iterable,
        batch_size: int = 500,
        idempotency_key: str | None = None,
        retries: int = 3,
    ) -> list[Job]:
        """Submit many independent jobs with few requests (``POST /v1/jobs:batch``, ``batch_size``
        jobs per request). Each item of ``jobs`` is one job: a text or a product dict
        (``{"id"?, "text"}``: a one-product job), a dict ``{"products": [...]}``, or a list of
        products. Returns the Jobs in order; wait for them with ``wait_all``.

        Each request carries an ``Idempotency-Key`` (``<idempotency_key or random>:<request index>``),
        so it is retried safely after a connection error or a ``503``, up to ``retries`` times.
        """
        entries: list[dict] = []
        for item in jobs:
            if isinstance(item, str):
                entries.append({"text": item})
            elif isinstance(item, dict):
                entries.append(item if ("products" in item or "text" in item) else {"products": [item]})
            elif isinstance(item, list | tuple):
                entries.append({"products": _products(item)})
            else:
                raise TypeError(
                    f"a job is a text, a product dict, {{'products': [...]}} or a list, not {type(item).__name__}"
                )
        base_key = idempotency_key or str(uuid.uuid4())
        out: list[Job] = []
        for n, start in enumerate(range(0, len(entries), max(1, batch_size))):
            body = {"jobs": entries[start : start + batch_size]}
            resp = self._post_retrying("/v1/jobs:batch", body, f"{base_key}:{n}", retries)
            out.extend(Job(self, d["job_id"], d) for d in resp.json()["jobs"])
        return out

    def _post_retrying(self, path: str, body: dict, key: str, retries: int) -> requests.Response:
        delay = 0.2
        for attempt in range(retries + 1):
            try:
                return self._request("POST", path, json=body, headers={"Idempotency-Key": key})
            except ProblemError as exc:
                if exc.status != 503 or attempt == retries:
                    raise
                time.sleep(exc.retry_after or delay)
            except requests.ConnectionError:
                if attempt == retries:
                    raise
                time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def wait_all(self, jobs: list[Job], timeout: float = 60.0, chunk: int = 1000) -> list[Job]:
        """Long-poll ``jobs`` (``POST /v1/jobs:lookup?wait=``, ``chunk`` ids per request, at most the
        server's ``MAX_BATCH_JOBS``) until all are final, or raise ``TimeoutError``. Updates each Job
        in place; returns ``jobs``."""
        deadline = time.monotonic() + timeout
        while True:
            pending = [j for j in jobs if not j.done]
            if not pending:
                return jobs
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(pending)} of {len(jobs)} jobs are not finished after {timeout} s")
            wait = min(remaining, MAX_LONG_POLL)
            for start in range(0, len(pending), chunk):
                part = pending[start : start + chunk]
                body = {"ids": [j.id for j in part]}
                try:
                    resp = self._request(
                        "POST", "/v1/jobs:lookup", params={"wait": f"{wait:g}"}, json=body, timeout=self.timeout + wait
                    )
                except ProblemError as exc:
                    chunk = self._smaller_chunk(exc, len(part))  # or raise: ask again in smaller parts
                    break
                except requests.ConnectionError:
                    time.sleep(0.2)
                    continue
                for job, data in zip(part, resp.json()["jobs"], strict=True):
                    if "error" in data and "status" not in data:
                        raise ProblemError(404, data["error"])
                    job.data = data

    @staticmethod
    def _smaller_chunk(exc: ProblemError, asked: int) -> int:
        """The read size after the server refused ``asked`` ids: its ``max_ids``, or half as many
        when the jobs hold more than ``max_results``. Re-raises any other refusal."""
        if exc.status == 422:
            limit = exc.problem.get("max_ids")
            if isinstance(limit, int) and 0 < limit < asked:
                return limit
            if "max_results" in exc.problem and asked > 1:
                return asked // 2
        raise exc

    def job(self, job_id: str, wait: float = 0) -> Job:
        """Read a job; ``wait`` > 0 long-polls up to that many seconds for it to finish."""
        params = {"wait": f"{wait:g}"} if wait > 0 else None
        resp = self._request("GET", f"/v1/jobs/{job_id}", params=params, timeout=self.timeout + wait)
        return Job(self, job_id, resp.json())

    def health(self) -> dict:
        return self._request("GET", "/healthz").json()

    def ready(self) -> dict:
        return self._request("GET", "/readyz").json()

    def categorize(self, products: Iterable, timeout: float = 60.0) -> list[dict]:
        """Submit, wait and return the results in one call."""
        return self.submit(products).wait(timeout).results()


class Job:
    """A submitted job. ``data`` is the last representation read from the service."""

    def __init__(self, client: Client, job_id: str, data: dict | None = None):
        self.client = client
        self.id = job_id
        self.data = data or {"job_id": job_id, "status": "queued"}

    def __repr__(self) -> str:
        return f"Job({self.id!r}, status={self.status!r})"

    @property
    def status(self) -> str:
        return self.data.get("status", "queued")

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATES

    def refresh(self, wait: float = 0) -> Job:
        self.data = self.client.job(self.id, wait=wait).data
        return self

    def wait(self, timeout: float = 60.0) -> Job:
        """Long-poll until the job is final (or raise ``TimeoutError``). Returns ``self``.

        Connection errors are retried with exponential backoff until the deadline.
        """
        deadline = time.monotonic() + timeout
        backoff = 0.05
        while not self.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"job {self.id} is still {self.status} after {timeout} s")
            try:
                self.refresh(wait=min(remaining, MAX_LONG_POLL))
                backoff = 0.05
            except requests.ConnectionError:
                time.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, 2.0)
        return self

    def results(self) -> list[dict]:
        """The results in input order. Raises ``JobFailed`` or ``RuntimeError`` if not succeeded."""
        if self.status == "failed":
            raise JobFailed(f"job {self.id} failed: {self.data.get('error')}")
        if self.status != "succeeded":
            raise RuntimeError(f"job {self.id} is {self.status}; call wait() first")
        return self.data["results"]
