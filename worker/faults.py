"""Fault injection for the reliability tests. **Test-only; off unless the worker's environment says so.**

``CATEGORIZER_TEST_TASK_DELAY=<seconds>``
    Every ``categorizer.categorize`` task sleeps this long after marking its job ``running`` and
    before the model call; micro-batch tasks (``categorizer.categorize_batch``) sleep this long
    at the start of the task body, before any job is marked running. The tests use it to hold a
    task mid-job while they SIGKILL or SIGTERM its worker, or to make it exceed a deliberately
    small time limit.

The variable is read from the *worker process* environment only. Nothing a client sends (body,
header, query) can switch it on, and it is never set by ``categorizer worker`` or the Docker
images. Leave it unset in production.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("categorizer.worker")

DELAY_ENV = "CATEGORIZER_TEST_TASK_DELAY"


def injected_delay() -> float:
    value = os.environ.get(DELAY_ENV)
    return float(value) if value else 0.0


def delay_point(job_id: str) -> None:
    """Sleep for the test-only delay, if one is configured (interruptible by the time limits)."""
    seconds = injected_delay()
    if seconds > 0:
        log.warning("test_delay job_id=%s seconds=%s (%s is set: test-only)", job_id, seconds, DELAY_ENV)
        time.sleep(seconds)
