"""Consumer bootstep: a worker that consumes the micro-batch queue may reserve a full batch.

Kept apart from ``worker.batching`` (the task) so that ``worker.celery_app`` can register it
without importing the task module (which imports the app). Light: no model, no celery_batches.
"""

from __future__ import annotations

import logging
import os

from celery import bootsteps

log = logging.getLogger("categorizer.worker")


def batch_max_size() -> int:
    """Jobs per micro-batch (``CATEGORIZER_BATCH_MAX_SIZE``, default 256)."""
    return max(1, int(os.environ.get("CATEGORIZER_BATCH_MAX_SIZE", "256")))


class BatchPrefetch(bootsteps.StartStopStep):
    """Raise the prefetch of a worker consuming the batch queue to 2 x the batch size (one batch
    running, the next one forming). With prefetch 1 no batch larger than one job could form.

    Not on a node that also consumes the catalog queue: it keeps prefetch 1 (and small batches)
    rather than reserving hundreds of catalog chunks (docs/catalogs.md)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, consumer) -> None:
        from worker.celery_app import BATCH_QUEUE, CATALOG_QUEUE

        queues = {q.name for q in consumer.task_consumer.queues} if consumer.task_consumer else set()
        if BATCH_QUEUE not in queues or consumer.qos is None:
            return
        if CATALOG_QUEUE in queues:
            # the prefetch is per node, not per queue: raised, it would reserve hundreds of catalog
            # chunks (unfair to other catalogs and workers, slow to redeliver after a crash)
            log.warning(
                "microbatch_prefetch_skipped reason=node_consumes_%s prefetch=%d: run the %s queue on its own "
                "worker (categorizer worker -Q %s) for full micro-batches",
                CATALOG_QUEUE,
                consumer.qos.value,
                BATCH_QUEUE,
                BATCH_QUEUE,
            )
            return
        wanted = 2 * batch_max_size()
        current = consumer.qos.value
        if current and current < wanted:
            consumer.qos.increment_eventually(wanted - current)
            consumer.qos.update()
            log.info("microbatch_prefetch from=%d to=%d", current, consumer.qos.value)
