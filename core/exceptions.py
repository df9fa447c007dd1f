"""One error family for the whole platform: services raise these, and the HTML views and the
DRF exception handler each translate them once."""

from __future__ import annotations


class ApplicationError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class ValidationFailed(ApplicationError):
    code = "invalid"


class PermissionDenied(ApplicationError):
    code = "permission_denied"
    status = 403


class NotFound(ApplicationError):
    code = "not_found"
    status = 404


class Conflict(ApplicationError):
    code = "conflict"
    status = 409


class PayloadTooLarge(ApplicationError):
    """The request body is over `DATA_UPLOAD_MAX_MEMORY_SIZE`. Django raises RequestDataTooBig
    lazily, when something first reads the body; the API and the pages both answer 413."""

    code = "request_too_large"
    status = 413

    def __init__(
        self, message: str = "The request body is larger than this server accepts."
    ) -> None:
        super().__init__(message)


class ServiceUnavailable(ApplicationError):
    """A service the platform needs (the database, or Redis: task queue, cache, throttles) did
    not answer. Answered as 503 with `Retry-After`; nothing the caller sent was wrong."""

    code = "service_unavailable"
    status = 503
    retry_after_seconds = 5


QUEUE_UNAVAILABLE = "The task queue is unavailable; try again shortly."
DATABASE_UNAVAILABLE = "The database is unavailable; try again shortly."


def outage_of(exc: BaseException) -> ServiceUnavailable | None:
    """The ServiceUnavailable an exception means, if it is a lost connection to PostgreSQL or
    Redis (the broker, cache and throttles live there); None for anything else. One mapping
    for the API's exception handler and the HTML error pages."""
    from django.db import InterfaceError as DbInterfaceError
    from django.db import OperationalError as DbOperationalError
    from kombu.exceptions import OperationalError as BrokerError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, ServiceUnavailable):
        return exc
    if isinstance(exc, BrokerError | RedisConnectionError | RedisTimeoutError):
        return ServiceUnavailable(QUEUE_UNAVAILABLE)
    if isinstance(exc, DbInterfaceError) or (
        isinstance(exc, DbOperationalError) and _connection_lost(exc)
    ):
        return ServiceUnavailable(DATABASE_UNAVAILABLE)
    return None


# SQLSTATEs of a server that went away: its shutdown, crash or start-up refusals. Class 08 is
# every connection exception.
_SERVER_GONE = frozenset({"57P01", "57P02", "57P03"})


def _connection_lost(exc: BaseException) -> bool:
    """An OperationalError that is a lost or refused connection, not one a live server raised
    (a statement timeout, a deadlock, a lock not granted): those are errors, not outages."""
    state = getattr(exc.__cause__, "sqlstate", None)
    return state is None or state.startswith("08") or state in _SERVER_GONE
