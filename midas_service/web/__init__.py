"""Flask app factory: settings, model runtime, blueprints, request ids, timing headers, metrics."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from midas_service import assets
from midas_service.config import JobSettings, Settings
from midas_service.logs import configure_logging
from midas_service.serving import lifecycle
from midas_service.serving.runtime import ModelRuntime
from midas_service.web import metrics, overload
from midas_service.web.api import api
from midas_service.web.cache import open_store
from midas_service.web.errors import register_error_handlers
from midas_service.web.jobs import install_jobs
from midas_service.web.multipart import ServiceRequest
from midas_service.web.page import page
from midas_service.web.security import install_security
from midas_service.web.unread_body import DiscardUnreadBody

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, load_model: bool = True, jobs: JobSettings | None = None
) -> Flask:
    """Build the app. With ``load_model`` the model loads on a background thread right away,
    so call this in the process that serves (a Gunicorn worker, after fork). ``jobs``: the
    /jobs settings (default: ``settings.jobs``)."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask(
        __name__,
        template_folder=str(assets.folder("templates")),
        static_folder=str(assets.folder("static")),
    )
    app.config.update(
        MIDAS_SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + 64 * 1024,  # room for multipart framing
        MIDAS_PUBLIC_SETTINGS={
            "backend": settings.backend,
            "max_upload_mb": settings.max_upload_mb,
            "max_pixels": settings.max_pixels,
            "colormap": settings.colormap,
        },
    )
    runtime = ModelRuntime(settings, on_failure=lifecycle.model_failed)
    app.extensions["midas_runtime"] = runtime
    app.extensions["midas_cache"] = open_store(
        settings.redis_url,
        settings.cache_mb,
        settings.redis_prefix,
        settings.cache_ttl_s,
        settings.redis_timeout_s,
    )
    app.register_blueprint(api)
    app.register_blueprint(page)
    register_error_handlers(app)
    _install_request_hooks(app)
    app.request_class = ServiceRequest
    install_security(app, settings)  # after the request ids: its 401s carry one
    install_jobs(app, jobs or settings.jobs)
    # Oversize bodies up to twice the limit are read and dropped, so the client hears the 413
    # (and /jobs' 401, 503 and 507, answered before its larger body is read).
    # Flask's documented middleware hook, which mypy sees as assigning to a method.
    jobs_bound = 2 * app.extensions["midas_jobs"].settings.max_upload_bytes
    app.wsgi_app = DiscardUnreadBody(  # type: ignore[method-assign]
        app.wsgi_app, bound=2 * settings.max_upload_bytes, paths={"/jobs": jobs_bound}
    )
    overload.install(app, settings)
    if settings.trusted_proxies:
        # Believe exactly that many proxies' X-Forwarded-For/-Proto/-Host/-Port (the last
        # entries; anything a client put before them is ignored), so links the app writes,
        # like the page's curl hint, say https://host:8443 behind nginx's TLS.
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)  # type: ignore[method-assign]
    if load_model:
        runtime.start()
    return app


def _install_request_hooks(app: Flask) -> None:
    @app.before_request
    def start_request() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()
        metrics.IN_FLIGHT.inc()

    @app.after_request
    def finish_request(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers["X-Worker-PID"] = str(os.getpid())  # which worker answered
        stages = g.get("stage_seconds", {})
        timing = [f"{name};dur={seconds * 1000:.2f}" for name, seconds in stages.items()]
        timing = [*g.get("timing_notes", []), *timing]
        response.headers["Server-Timing"] = ", ".join([*timing, f"total;dur={elapsed * 1000:.2f}"])
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        output = g.get("output", "") if endpoint == "/predict" else ""
        metrics.REQUESTS.labels(endpoint, request.method, str(response.status_code), output).inc()
        metrics.REQUEST_SECONDS.labels(endpoint).observe(elapsed)
        return response

    @app.teardown_request
    def end_request(exc: BaseException | None) -> None:
        if "started" in g:
            metrics.IN_FLIGHT.dec()
