"""key=value log lines carrying the request id, for the app and Gunicorn alike."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = (
    "ts=%(asctime)s level=%(levelname)s logger=%(name)s request_id=%(request_id)s %(message)s"
)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (``-`` outside a request) so every line has the same keys."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _current_request_id()
        return True


def _current_request_id() -> str:
    """The request id inside a Flask request; processes without Flask (the job worker, the
    commands) never import it for this."""
    flask = sys.modules.get("flask")
    if flask is None or not flask.has_request_context():
        return "-"
    return flask.g.get("request_id", "-")


def configure_logging(level: str = "info") -> None:
    """Idempotent root-logger set-up."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if any(getattr(h, "_midas", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestIdFilter())
    handler._midas = True  # type: ignore[attr-defined]
    root.addHandler(handler)
