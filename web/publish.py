"""Celery task messages for the Redis transport, built here so that they can be written in the
same Redis round trip as the job record (``worker.jobstore.JobStore.submit``).

``Celery.send_task`` publishes through a kombu producer: a pooled connection, a queue declaration
check and one ``LPUSH`` per call, which costs a round trip and ~15 % of the web tier's CPU per job
(docs/benchmarks.md). The message itself is plain JSON, so the web tier builds exactly what
``send_task(name, args=(job_id,), task_id=job_id, queue=queue, ignore_result=True)`` would push:

* headers, properties and body from Celery's own ``app.amqp.create_task_message`` (task protocol 2,
  the same call ``send_task`` makes: task name, ``argsrepr``, ``ignore_result``, ``root_id``, ...);
* the body serialized as JSON with kombu's serializer and base64-encoded (kombu's Redis channel
  ``body_encoding``);
* the kombu Redis envelope: ``content-type``/``content-encoding``, ``delivery_mode`` 2
  (persistent), ``delivery_info`` (anonymous direct exchange ``""``, routing key = queue name),
  ``priority`` 0 (so the list is the queue's own, no priority suffix), a random ``delivery_tag``.

Acknowledgement semantics are unchanged: ``acks_late`` and ``reject_on_worker_lost`` are task
options of the worker, not message fields. ``tests/integration/test_batch_submit.py`` compares a
built message with the one ``send_task`` pushes. JSON only; nothing here imports worker code.
"""

from __future__ import annotations

import base64
import uuid

from celery import Celery
from kombu.serialization import dumps as kombu_serialize
from kombu.utils.json import dumps as kombu_json


def task_message(app: Celery, name: str, task_id: str, queue: str, args: tuple | None = None) -> str:
    """The JSON string kombu's Redis transport would ``LPUSH`` onto ``queue`` for
    ``app.send_task(name, args=args or (task_id,), task_id=task_id, queue=queue, ignore_result=True)``."""
    args = args if args is not None else (task_id,)
    headers, properties, body, _ = app.amqp.create_task_message(
        task_id,
        name,
        args,
        {},
        reply_to=app.thread_oid,
        create_sent_event=False,
        ignore_result=True,
    )
    content_type, content_encoding, data = kombu_serialize(body, serializer="json")
    if isinstance(data, str):
        data = data.encode(content_encoding or "utf-8")
    props = dict(properties)
    props["delivery_mode"] = 2
    props["delivery_info"] = {"exchange": "", "routing_key": queue}
    props["priority"] = 0
    props["body_encoding"] = "base64"
    props["delivery_tag"] = str(uuid.uuid4())
    envelope = {
        "body": base64.b64encode(data).decode("ascii"),
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": headers,
        "properties": props,
    }
    return kombu_json(envelope)
