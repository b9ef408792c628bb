"""WSGI entry point: ``gunicorn -c gunicorn.conf.py app:app`` (settings from MIDAS_* variables)."""

from midas_service.web import create_app

app = create_app()
