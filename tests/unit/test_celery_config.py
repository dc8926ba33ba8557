"""The Celery app's settings that the service's guarantees rest on."""

from __future__ import annotations

from worker.celery_app import BATCH_QUEUE, CATEGORIZE_BATCH_TASK, CATEGORIZE_TASK, INTERACTIVE_QUEUE, make_celery


def test_json_only_acks_late_and_queues(monkeypatch):
    monkeypatch.setenv("CATEGORIZER_VISIBILITY_TIMEOUT", "7")
    monkeypatch.setenv("CATEGORIZER_RESTORE_INTERVAL", "2")
    app = make_celery("redis://example:6379/4")
    conf = app.conf
    assert conf.broker_url == "redis://example:6379/4"
    assert conf.result_backend == "redis://example:6379/4"
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"] and list(conf.result_accept_content) == ["json"]
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.result_expires == 3600
    assert conf.broker_transport_options["visibility_timeout"] == 7
    assert conf.broker_transport_options["unacked_restore_interval"] == 2
    assert conf.task_routes[CATEGORIZE_TASK]["queue"] == INTERACTIVE_QUEUE
    assert conf.task_routes[CATEGORIZE_BATCH_TASK]["queue"] == BATCH_QUEUE
    assert {INTERACTIVE_QUEUE, BATCH_QUEUE} <= {q.name for q in conf.task_queues}


def test_redis_url_from_environment(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://other:6380/2")
    assert make_celery().conf.broker_url == "redis://other:6380/2"
    monkeypatch.delenv("REDIS_URL")
    assert make_celery().conf.broker_url == "redis://localhost:6379/0"
