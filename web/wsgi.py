"""WSGI entry point for gunicorn: ``gunicorn -k gthread --threads 64 web.wsgi:app``."""

from web import create_app

app = create_app()
