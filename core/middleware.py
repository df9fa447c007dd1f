from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode

from core import metrics, tracing
from core.exceptions import ApplicationError, outage_of
from core.request_context import client_of, client_var, request_id_var

_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Gives each request an id (honouring a sane incoming `X-Request-ID`), puts it on the
    request, in the logging context and on the response; puts the caller's address and user
    agent in the request context (`core.request_context`) for the audit trail."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        client_token = client_var.set(client_of(request))
        try:
            response = self.get_response(request)
        finally:
            client_var.reset(client_token)
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


class TelemetryMiddleware:
    """Counts and times each request by its URL route name (core/metrics.py: a bounded label;
    `unmatched` when nothing matched) and wraps it in a server span (core/tracing.py) that
    continues an incoming `traceparent`. After RequestIdMiddleware, so the span has the id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        parent = propagate.extract(request.headers)
        token = otel_context.attach(parent)
        try:
            name = f"{request.method} {request.path_info}"
            with tracing.span(name, kind=SpanKind.SERVER) as span:
                response = self.get_response(request)
                match = request.resolver_match
                view = match.view_name if match else metrics.UNMATCHED_VIEW
                if span.is_recording():
                    route = match.route if match else ""
                    span.update_name(f"{request.method} {route or view}")
                    span.set_attributes(
                        {
                            "http.request.method": request.method or "",
                            "http.route": route,
                            "http.response.status_code": response.status_code,
                            **tracing.common_attributes(),
                        }
                    )
                    if response.status_code >= 500:
                        span.set_status(Status(StatusCode.ERROR))
        finally:
            otel_context.detach(token)
        metrics.http_request(
            view=view,
            method=request.method or "",
            status=response.status_code,
            seconds=time.perf_counter() - started,
        )
        return response


class ApplicationErrorMiddleware:
    """HTML views: an ApplicationError a view did not handle becomes its status code with the
    message on the error page, never a 500 traceback. (The API has its own handler.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if outage_of(exception) is not None:
            return None  # core.views.server_error answers 503 (this page would need the DB)
        if not isinstance(exception, ApplicationError):
            return None
        template = {403: "403.html", 404: "404.html"}.get(exception.status, "error.html")
        context = {"exception": exception.message, "status": exception.status}
        return render(request, template, context, status=exception.status)
