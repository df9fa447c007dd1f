"""The single DRF exception handler: every API error is `{"error": {code, message, fields}}`."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.exceptions import ApplicationError, PayloadTooLarge, ServiceUnavailable, outage_of

logger = logging.getLogger(__name__)


def _flatten(detail: Any) -> list[str]:
    if isinstance(detail, list):
        return [str(item) for entry in detail for item in _flatten(entry)]
    if isinstance(detail, dict):
        return [f"{key}: {msg}" for key, value in detail.items() for msg in _flatten(value)]
    return [str(detail)]


def _fields(detail: Any) -> dict[str, list[str]]:
    if not isinstance(detail, dict):
        return {}
    return {str(key): _flatten(value) for key, value in detail.items()}


def error_body(
    code: str, message: str, fields: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    exc = outage_of(exc) or exc  # the database or Redis (queue, throttles) is down: 503
    if isinstance(exc, RequestDataTooBig):  # Django raises it when the view first reads the body
        exc = PayloadTooLarge()
    if isinstance(exc, ApplicationError):
        answer = Response(error_body(exc.code, exc.message, exc.fields), status=exc.status)
        if isinstance(exc, ServiceUnavailable):
            answer["Retry-After"] = str(exc.retry_after_seconds)
        return answer
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled API error", exc_info=exc)
        return Response(
            error_body("server_error", "Something went wrong on our side."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if not isinstance(exc, exceptions.APIException):  # DRF only answers for its own family
        return response
    if isinstance(exc, exceptions.ValidationError):
        fields = _fields(exc.detail)
        non_field = fields.pop("non_field_errors", [])
        message = non_field[0] if non_field else "Some fields are invalid: " + ", ".join(fields)
        if not fields and not non_field:
            message = "; ".join(_flatten(exc.detail))
        response.data = error_body("invalid", message, fields)
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        message = "; ".join(_flatten(exc.detail))
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            message = f"Too many requests. Try again in {int(wait) + 1} seconds."
        response.data = error_body(str(code), message)
    return response
