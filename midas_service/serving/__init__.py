"""Gunicorn's side: the worker class, the master's lifecycle hooks, admission."""
