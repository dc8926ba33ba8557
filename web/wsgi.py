"""WSGI entry point for gunicorn: ``gunicorn -k gthread --threads 32 web.wsgi:app``."""

from web import create_app

app = create_app()
