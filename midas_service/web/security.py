"""Access control (API keys), CORS and security headers, in one place.

All of it is off or neutral by default and installed by the app factory:

- API keys (``MIDAS_API_KEYS``): everything that runs the model (POST /predict, the page's
  POST /) needs ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. Exempt: the probes, the
  page itself (GET /, static files: no data, no compute), the OpenAPI document, CORS
  preflights (browsers never send credentials on them), and /metrics unless
  ``MIDAS_METRICS_PUBLIC=0``.
- Public or operator: a request that arrived through a proxy (nginx, the Ingress: it carries
  ``X-Forwarded-For`` or ``Forwarded``) is public; one on Gunicorn's own port is an operator's
  (probes, Prometheus, ``kubectl port-forward``). Public /readyz and /healthz say ready or not
  and little else; with ``MIDAS_METRICS_PUBLIC=0`` public /metrics needs a key, or is a 404
  when no keys are set. A client can only make itself public by sending the header, never an
  operator by leaving it out: the proxy adds it.
- Unknown paths are 404 with or without keys (a 401 would hide nothing and confuse).
- CORS (``MIDAS_CORS_ORIGINS``): exact origins only; the answer names the caller's origin.
- Headers on every answer: nosniff, no referrer, no framing. (The page's CSP is the page's.)
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, request

from midas_service.config import Settings
from midas_service.errors import NotFound, Unauthorized

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
PUBLIC_ENDPOINTS = {
    "api.healthz",
    "api.readyz",
    "api.openapi",
    "page.index",
    "page.colormaps",
    "static",
}
# Headers a reverse proxy adds to what it passes on (nginx here, ingress-nginx and other
# Ingress controllers too); a request on Gunicorn's own port has none of them.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded")
CORS_METHODS = "GET, POST"
CORS_REQUEST_HEADERS = "Authorization, X-API-Key, Content-Type, X-Request-ID"
CORS_EXPOSED_HEADERS = "Server-Timing, X-Request-ID, Content-Disposition"
CORS_MAX_AGE_S = "600"


def is_public() -> bool:
    """True for a request that came through a reverse proxy, i.e. from the public side."""
    return any(name in request.headers for name in FORWARDING_HEADERS)


def presented_key() -> bytes | None:
    """The key from ``Authorization: Bearer KEY`` or ``X-API-Key``, as sent."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip().encode("utf-8")
    key = request.headers.get("X-API-Key", "").strip()
    return key.encode("utf-8") if key else None


def key_is_valid(given: bytes, keys: list[bytes]) -> bool:
    """Constant-time comparison against every key (no early exit on a match)."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key)
    return matched


def install_security(app: Flask, settings: Settings) -> None:
    keys = [key.encode("utf-8") for key in settings.api_keys]
    origins = frozenset(settings.cors_origins)
    open_metrics = settings.metrics_public
    public = PUBLIC_ENDPOINTS | ({"api.prometheus_metrics"} if open_metrics else set())

    def is_preflight() -> bool:
        return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers

    @app.before_request
    def check_access() -> Response | None:
        if origins and is_preflight() and request.headers.get("Origin") in origins:
            response = Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = CORS_REQUEST_HEADERS
            response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE_S
            return response
        if request.url_rule is None:
            return None  # no such path (404) or method (405): routing answers, key or not
        hidden_metrics = request.endpoint == "api.prometheus_metrics" and not open_metrics
        if hidden_metrics and not keys and is_public():
            raise NotFound("no such path")  # nothing to authenticate with: not served publicly
        if not keys or request.method == "OPTIONS" or request.endpoint in public:
            return None
        given = presented_key()
        if given is not None and key_is_valid(given, keys):
            return None
        challenge = 'Bearer realm="midas"'
        if given is not None:
            challenge += ', error="invalid_token"'
        raise Unauthorized(
            "this endpoint needs an API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            if given is None
            else "the API key is not valid",
            headers={"WWW-Authenticate": challenge},
        )

    @app.after_request
    def add_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if origins:
            response.vary.add("Origin")
            origin = request.headers.get("Origin")
            if origin in origins:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
        return response
