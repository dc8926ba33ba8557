"""Worker heartbeat for ``/readyz``: a consumer bootstep that beats while the worker consumes.

Cheaper and quicker than a ``celery inspect ping`` broadcast: ``/readyz`` reads one sorted set.
The beat runs on the consumer's timer, so it stops when the consumer stops consuming; a
graceful shutdown removes the entry at once, a killed worker ages out after
``CATEGORIZER_WORKER_TTL`` seconds.

``CATEGORIZER_HEARTBEAT_INTERVAL``  seconds between beats (default 2)
"""

from __future__ import annotations

import logging
import os
import socket

from celery import bootsteps

from worker import model_state

log = logging.getLogger("categorizer.worker")


def heartbeat_interval() -> float:
    return float(os.environ.get("CATEGORIZER_HEARTBEAT_INTERVAL", "2"))


class Heartbeat(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer, **kwargs):
        super().__init__(consumer, **kwargs)
        self.tref = None
        self.store = None
        self.hostname = None

    def start(self, consumer) -> None:
        from worker.jobstore import JobStore, connect

        self.hostname = consumer.hostname or socket.gethostname()
        self.consumer = consumer
        self.store = JobStore(connect(consumer.app.conf.broker_url))
        self.queues = sorted(q.name for q in consumer.task_consumer.queues) if consumer.task_consumer else []
        self.beat()
        self.tref = consumer.timer.call_repeatedly(heartbeat_interval(), self.beat)

    def beat(self) -> None:
        from training.bundle import BundleError, read_current

        try:
            version = read_current()
        except BundleError:
            version = None
        info = {"pid": os.getpid(), "queues": self.queues, "model_version": version}
        try:
            # what the pool processes really serve (and refused), see worker.model_state
            info.update(model_state.summarize(model_state.collect(self.store.redis, self.hostname, self._pool_pids())))
            info["model_current"] = version
            if info["model_version"] is None and not info["model_processes"]:
                info["model_version"] = version  # no process reported yet
        except Exception as exc:
            log.warning("model_state_read_failed hostname=%s error=%s", self.hostname, exc)
        try:
            self.store.heartbeat(self.hostname, info, max_age=heartbeat_interval())
        except Exception as exc:  # Redis away: the next beat tries again
            log.warning("heartbeat_failed hostname=%s error=%s", self.hostname, exc)

    def _pool_pids(self) -> list[int] | None:
        try:
            pids = self.consumer.pool.info.get("processes")
        except Exception:
            return None
        return [int(p) for p in pids] if pids else None

    def stop(self, consumer) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        if self.store is not None:
            try:
                self.store.remove_worker(self.hostname)
            except Exception as exc:
                log.warning("heartbeat_remove_failed hostname=%s error=%s", self.hostname, exc)

    shutdown = stop
