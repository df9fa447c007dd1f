"""A small HTTP server for `/metrics` in a process that has no web server: a Celery worker host
(config/celery.py starts it when CELERY_METRICS_PORT is set). It serves this host's multiprocess
files only, not the scrape-time figures (queue length, breakers, outbox), which the web's
`/metrics` serves once for the whole deployment; the same bearer token guards it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from core import metrics
from core.metrics_auth import metrics_access

logger = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found."]
    access = metrics_access(environ.get("HTTP_AUTHORIZATION", ""))
    if access == 404:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found."]
    if access == 401:
        start_response(
            "401 Unauthorized",
            [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="metrics"')],
        )
        return [b"A bearer token is required."]
    start_response("200 OK", [("Content-Type", metrics.CONTENT_TYPE)])
    return [metrics.render(scrape_time=False)]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


def start(*, host: str, port: int) -> WSGIServer:
    """Serve in a daemon thread; returns the server (its `server_port` when `port` was 0)."""
    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-exporter", daemon=True).start()
    logger.info("metrics: serving this worker host's figures on %s:%s", host, server.server_port)
    return server
