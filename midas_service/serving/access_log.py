"""Gunicorn's access log without secrets from URLs.

Keys are only accepted in headers, but a client may still put one in the query string
(``?api_key=...``), and the access log would keep it. Here every query value is replaced by
``REDACTED`` unless its parameter is one of the known, harmless ones (``SAFE_PARAMETERS``), in
both the query (``%(q)s``) and the request line (``%(r)s``). An allowlist, so a secret under
any name stays out of the log.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote

from gunicorn.glogging import Logger

SAFE_PARAMETERS = frozenset({"output", "format", "colormap"})
REDACTED = "REDACTED"


def scrub_query(query: str) -> str:
    """``a=1&api_key=s`` -> ``a=REDACTED&api_key=REDACTED`` unless the name is safe."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:  # not name=value pairs at all: nothing to keep
        return REDACTED
    return "&".join(
        f"{quote(name, safe='')}={quote(value, safe='') if name in SAFE_PARAMETERS else REDACTED}"
        for name, value in pairs
    )


def scrub_uri(uri: str) -> str:
    path, separator, query = uri.partition("?")
    return f"{path}{separator}{scrub_query(query)}" if separator else uri


class ScrubbingLogger(Logger):
    """Gunicorn's logger with query values outside ``SAFE_PARAMETERS`` redacted."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["q"] = scrub_query(environ.get("QUERY_STRING", ""))
        atoms["r"] = (
            f"{environ['REQUEST_METHOD']} {scrub_uri(environ.get('RAW_URI', ''))} "
            f"{environ['SERVER_PROTOCOL']}"
        )
        for name in [name for name in atoms if name.endswith("}e")]:
            if name in ("{query_string}e", "{raw_uri}e", "{request_uri}e"):
                atoms[name] = scrub_uri(str(atoms[name]))
        return atoms
