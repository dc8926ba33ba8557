"""WSGI entry point for gunicorn: ``gunicorn -k gthread --threads 64 web.wsgi:app``.

Logs go to stderr at ``CATEGORIZER_LOG_LEVEL`` (default INFO), one greppable line per event
(``job_queued job_id=... count=... queue=...``).
"""

import logging
import os

from web import create_app

if not logging.getLogger().handlers:
    logging.basicConfig(
        level=os.environ.get("CATEGORIZER_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(process)d %(name)s %(message)s",
    )

app = create_app()
