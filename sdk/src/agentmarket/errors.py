"""One exception family. Every HTTP error the API answers becomes an `ApiError` subclass that
carries the API's envelope (`{"error": {"code", "message", "fields"}}`, docs/api.md)."""

from __future__ import annotations

from typing import Any


class AgentMarketError(Exception):
    """Base of everything this package raises."""


class ConnectionFailed(AgentMarketError):
    """The server could not be reached (refused, DNS, timeout), after the retries a GET gets."""


class WaitTimedOut(AgentMarketError):
    """A run did not finish within the time the caller was willing to wait."""


class InvalidArgument(AgentMarketError, ValueError):
    """An argument is invalid before anything is sent (e.g. a price that is not an amount)."""


class ApiError(AgentMarketError):
    """The API answered an error. `message` is the API's own sentence; `fields` maps each
    invalid field to its problems (400)."""

    status: int = 0

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str = "",
        fields: dict[str, list[str]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.fields: dict[str, list[str]] = fields or {}
        self.retry_after = retry_after
        super().__init__(self.describe())

    def describe(self) -> str:
        """The message and each field's problems on one line."""
        # A message that already spells out a field's problems is not repeated.
        unsaid = {
            name: errors
            for name, errors in self.fields.items()
            if not all(error in self.message for error in errors)
        }
        if not unsaid:
            return self.message
        problems = "; ".join(
            f"{name}: {' '.join(errors)}" for name, errors in sorted(unsaid.items())
        )
        return f"{self.message} ({problems})"


class InvalidRequest(ApiError):
    """400 or 422: the input is invalid; `fields` names each field and its problem."""


class AuthenticationFailed(ApiError):
    """401: the API key is missing, unknown, revoked or expired."""


class PaymentRequired(ApiError):
    """402: the request needs money that is not there; `code` says which: "quota_exceeded"
    (the plan's allowance is used up, or the workspace is read-only after a failed payment),
    "budget_exceeded" (the workspace's AI spend is used up: its monthly budget or what its plan
    includes) or "purchase_required" (a copy of a paid marketplace listing without an active
    purchase). `message` names the limit or listing and how to lift it (docs/api.md)."""


class PermissionDenied(ApiError):
    """403: the key's scopes (or the role) do not allow this."""


class NotFound(ApiError):
    """404: no such object in this workspace (another workspace's objects answer this too)."""


class Conflict(ApiError):
    """409: the object's state does not allow it (a finished run, a listing installed twice)."""


class RateLimited(ApiError):
    """429: too many requests; `retry_after` says how many seconds to wait."""


class ServiceUnavailable(ApiError):
    """503: a dependency of the server is down; try again later."""


class ServerError(ApiError):
    """Any other 5xx."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    402: PaymentRequired,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_from_response(status: int, body: Any, headers: dict[str, str]) -> ApiError:
    """The exception for an error answer; a body that is not the envelope (a proxy's HTML
    page) still gives a clear message naming the status."""
    envelope = body.get("error") if isinstance(body, dict) else None
    if isinstance(envelope, dict):
        message = str(envelope.get("message") or f"HTTP {status}")
        code = str(envelope.get("code") or "")
        raw_fields = envelope.get("fields")
    else:
        message, code, raw_fields = f"The server answered HTTP {status}.", "", None
    fields: dict[str, list[str]] = {}
    if isinstance(raw_fields, dict):
        for name, problems in raw_fields.items():
            if isinstance(problems, list):
                fields[str(name)] = [str(p) for p in problems]
            else:
                fields[str(name)] = [str(problems)]
    retry_after: float | None = None
    try:
        retry_after = float(headers.get("retry-after", ""))
    except ValueError:
        retry_after = None
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(message, status=status, code=code, fields=fields, retry_after=retry_after)
