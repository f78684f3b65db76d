"""Flask app factory (flaskr style): `create_app(test_config=None)`.

The app owns one `Recommender` (the shell around `rank`), the metrics, JSON access logs with a request
id, and error handlers that turn every error into one plain sentence: no stack trace and no 500 ever
reaches a caller. Dependencies open lazily in the serving process, so gunicorn may fork safely.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from core.revision import code_revision
from inference.config import ServiceSettings
from inference.logs import access_line, request_id, setup_logging
from inference.metrics import ServiceMetrics, init_metrics
from inference.metrics import path as metric_path
from inference.provenance import ProvenanceLog
from inference.routes import bp, plain
from inference.service import Recommender
from inference.sources import SqlHistorySource, open_vector_store, open_version_store
from inference.versions import NoVersions, SqlVersionSource

log = logging.getLogger("inference.app")

SENTENCES = {
    400: "The request is malformed.",
    404: "No such endpoint; /openapi.json lists the ones this service offers.",
    413: "The request body is too large.",
    415: "The request body must be JSON.",
}


def _ready_probe(rec: Recommender, cache_seconds: float) -> Callable[[], dict[str, Any]]:
    """/ready's probe, run at most every `cache_seconds`; it also sets the recommender_ready gauge."""
    lock = threading.Lock()
    last: dict[str, Any] = {}

    def probe() -> dict[str, Any]:
        with lock:
            now = time.monotonic()
            if last and now - last["at"] < cache_seconds:
                return last["doc"]
            doc = rec.probe()
            rec.set_ready(doc["status"] == "ready")
            last.update(at=now, doc=doc)
            return doc

    return probe


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the service. test_config may set SETTINGS (ServiceSettings), HISTORY_SOURCE (a
    HistorySource), VECTORS_FACTORY (a callable returning the unversioned VectorSource), VERSION_SOURCE
    (where the active model version is read; default the SQL store, or none when HISTORY_SOURCE is
    given), VERSION_VECTORS (a callable (version, rank config) -> VectorSource), DATABASE_URL and WARM
    (default True: adopt the active version, load the popular list, open the vectors and start the
    version watcher now; gunicorn imports the app in each worker after the fork, so this runs in the
    worker)."""
    setup_logging()
    app = Flask(__name__)
    app.config.from_mapping(
        SETTINGS=None, HISTORY_SOURCE=None, VECTORS_FACTORY=None, DATABASE_URL=None, VERSION_SOURCE=None,
        VERSION_VECTORS=None,
        MAX_CONTENT_LENGTH=1024 * 1024, REVISION=None, WARM=True,
    )
    if test_config is not None:
        app.config.update(test_config)
    settings: ServiceSettings = app.config["SETTINGS"] or ServiceSettings.from_env()
    app.config["SETTINGS"] = settings
    app.config["REVISION"] = app.config["REVISION"] or code_revision()

    metrics = init_metrics(app)
    history = app.config["HISTORY_SOURCE"] or SqlHistorySource(app.config["DATABASE_URL"])
    vectors_factory = app.config["VECTORS_FACTORY"] or (lambda: open_vector_store(settings=settings.vectors))
    versions = app.config["VERSION_SOURCE"] or (
        NoVersions() if app.config["HISTORY_SOURCE"] else SqlVersionSource(app.config["DATABASE_URL"]))
    rec = Recommender(settings, history, vectors_factory, metrics, versions=versions,
                      version_vectors=app.config["VERSION_VECTORS"] or (
                          lambda version, rank: open_version_store(version, rank, settings.vectors)))
    app.extensions["recommender"] = rec
    app.extensions["provenance"] = ProvenanceLog(settings.provenance_log)
    if app.config["WARM"]:
        rec.watcher.check(warm=False)  # serve the active version from the first request
        rec.warm()
        rec.watcher.start()
    app.extensions["ready_probe"] = _ready_probe(rec, settings.ready_cache_seconds)
    if app.config["WARM"]:
        app.extensions["ready_probe"]()  # sets recommender_ready from the start
    app.register_blueprint(bp)
    _register_hooks(app, settings, metrics)
    _register_errors(app)
    return app


def _register_hooks(app: Flask, settings: ServiceSettings, metrics: ServiceMetrics) -> None:
    """Per request: a request id (the caller's X-Request-ID when sane), the HTTP metrics, the access line."""
    access_log = settings.access_log
    metrics_path = app.extensions["prometheus_exporter"].path

    @app.before_request
    def start() -> None:
        state = g._get_current_object()  # one context lookup instead of one per attribute
        state.started = time.perf_counter()
        state.request_id = request_id(request.environ.get("HTTP_X_REQUEST_ID"))

    @app.after_request
    def finish(response: Response) -> Response:
        now = time.perf_counter()
        state = g._get_current_object()
        req = request._get_current_object()  # type: ignore[attr-defined]
        rid = getattr(state, "request_id", None) or request_id(None)
        seconds = now - getattr(state, "started", now)
        status = response.status_code
        route = metric_path(req)
        if route != metrics_path:
            metrics.http.observe(req.method, route, status, seconds)
        response.headers["X-Request-ID"] = rid
        if access_log:
            extra = {
                "request_id": rid,
                "method": req.method,
                "path": req.path[:200],
                "status": status,
                "latency_ms": round(seconds * 1000, 3),
                "remote": req.remote_addr,
            }
            fallback = getattr(state, "fallback_reason", None)
            if fallback:
                extra["fallback"] = fallback
            access_line(extra)
        return response


def _register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 400
        if code == 405:
            text = f"This endpoint does not accept {request.method}."
        else:
            text = SENTENCES.get(code) or f"{exc.name}."
        response = plain(text, code)
        for name in ("Allow", "Retry-After"):
            value = exc.get_response().headers.get(name)
            if value:
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error",
                      extra={"request_id": g.get("request_id"), "path": request.path[:200]})
        return plain("The service could not answer this request; please retry.", 503)
