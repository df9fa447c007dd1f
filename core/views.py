from __future__ import annotations

import logging
import sys

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.html import escape
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core import metrics
from core.exceptions import PayloadTooLarge, ServiceUnavailable, outage_of
from core.health import readiness
from core.metrics_auth import metrics_access

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    result = readiness()
    return JsonResponse(result, status=200 if result["status"] == "ok" else 503)


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus' scrape (docs/operations.md, "Metrics and traces"): 404 when METRICS_TOKEN is
    unset, 401 without the right bearer token."""
    refusal = metrics_access(request.headers.get("Authorization", ""))
    if refusal == 404:
        return HttpResponse("Not found.", status=404, content_type="text/plain")
    if refusal == 401:
        response = HttpResponse("A bearer token is required.", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.render(), content_type=metrics.CONTENT_TYPE)


def _outage_response(request: HttpRequest, outage: ServiceUnavailable) -> HttpResponse:
    """503 with `Retry-After`: the API's error envelope for API paths, else a page that
    needs neither the database nor Redis (base.html would read the session and the user)."""
    response: HttpResponse
    if request.path.startswith("/api/") or request.path.startswith("/hooks/"):
        response = JsonResponse(
            {"error": {"code": outage.code, "message": outage.message, "fields": {}}},
            status=outage.status,
        )
    else:
        page = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<title>Temporarily unavailable</title></head><body>"
            f"<h1>Temporarily unavailable</h1><p>{escape(outage.message)}</p></body></html>"
        )
        response = HttpResponse(page, status=outage.status)
    response["Retry-After"] = str(outage.retry_after_seconds)
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """`handler500`: Django calls it inside the `except` of whatever escaped a view or a
    middleware. A lost connection to PostgreSQL or Redis answers 503 (it is not a bug, and the
    client should retry); anything else gets the usual 500 page."""
    outage = outage_of(sys.exc_info()[1] or Exception())
    if outage is not None:
        logger.warning("answered 503 for %s: %s", request.path, outage.message)
        return _outage_response(request, outage)
    return defaults.server_error(request)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """`handler400`. A body over `DATA_UPLOAD_MAX_MEMORY_SIZE` surfaces here (Django raises
    RequestDataTooBig from whatever reads the form first, often the CSRF check) and answers
    413 with a page that says so; any other bad request gets Django's 400 page."""
    if isinstance(exception, RequestDataTooBig):
        too_large = PayloadTooLarge(
            "What you sent is larger than this server accepts. Go back: the form still holds "
            "what you typed, so you can shorten it and submit again."
        )
        if request.path.startswith("/api/") or request.path.startswith("/hooks/"):
            body = {"error": {"code": too_large.code, "message": too_large.message, "fields": {}}}
            return JsonResponse(body, status=too_large.status)
        context = {"exception": too_large.message, "status": too_large.status}
        return render(request, "error.html", context, status=too_large.status)
    return defaults.bad_request(request, exception or Exception())


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """`handler404`. An API path that matches no route (`/api/v1/agents/abc/`) answers the
    API's JSON envelope like every other API error; pages get the 404 page."""
    if request.path.startswith("/api/"):
        body = {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}
        return JsonResponse(body, status=404)
    return defaults.page_not_found(request, exception or Exception())
