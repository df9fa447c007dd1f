from __future__ import annotations

import math
from collections.abc import Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from core.recovery import redis_client
from tenants.models import ApiKey

if TYPE_CHECKING:
    from rest_framework.views import APIView


class _LiveRateThrottle(SimpleRateThrottle):
    """Reads its rate from settings on each request (so configuration changes apply)."""

    def get_rate(self) -> str | None:
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
        return rates.get(self.scope or "")


class _CountingRateThrottle(_LiveRateThrottle):
    """A counter per caller and clock window in Redis: one round trip a request (`INCR` and
    `EXPIRE` in one pipeline), atomic across worker processes.

    DRF's SimpleRateThrottle keeps every request's timestamp in one cached list that each
    request reads, unpickles, extends, pickles and writes back: up to `rate` floats both ways
    per request (600 at the key's default rate), two round trips, and two workers can both read
    the list before either writes it. The fixed window lets up to twice the rate through in the
    seconds around a window boundary (the end of one window and the start of the next); a
    refused caller is told to retry when its window ends.
    """

    num_requests: int | None  # set by SimpleRateThrottle from the rate
    duration: int | None

    def allow_request(self, request: Request, view: APIView) -> bool:
        pipe = redis_client().pipeline(transaction=False)
        if not self._queue_count(pipe, request, view):
            return True
        return self._counted(pipe.execute()[0])

    def _queue_count(self, pipe: Any, request: Request, view: APIView) -> bool:
        """Queue this request's `INCR` and `EXPIRE` on `pipe`; False when nothing is counted
        (no rate, or not this throttle's kind of caller)."""
        if self.rate is None or self.num_requests is None or not self.duration:
            return False
        ident = self.get_cache_key(request, view)
        if ident is None:
            return False
        self._now = self.timer()
        window = int(self._now // self.duration)
        key = f"{_key_prefix()}:{ident}:{window}"
        pipe.incr(key)
        pipe.expire(key, self.duration * 2)
        return True

    def _counted(self, used: Any) -> bool:
        """Whether the request counted by `_queue_count` is within the rate (`used`: what the
        `INCR` answered)."""
        if int(used) <= (self.num_requests or 0):
            return True
        duration = self.duration or 1
        self._wait = max(1.0, math.ceil(duration - self._now % duration))
        return False

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)


def _key_prefix() -> str:
    return str(settings.CACHES["default"].get("KEY_PREFIX") or "am")


# Set on a request by ApiKeyAuthentication when a working key was presented and the address's
# failed attempts are still to be checked: ApiKeyRateThrottle reads them in its own round trip.
FAILURES_UNCHECKED = "_api_key_failures_unchecked"
BLOCKED_DETAIL = "Too many failed API-key attempts."


class ApiKeyRateThrottle(_CountingRateThrottle):
    """Per API key, counted in Redis (the default cache) across all workers. For a call with a
    working key it also reads the address's failed attempts (AuthFailureThrottle) in the same
    round trip: a blocked address is refused here, with every key (docs/decisions.md 128)."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}

    def allow_request(self, request: Request, view: APIView) -> bool:
        failures = AuthFailureThrottle() if getattr(request, FAILURES_UNCHECKED, False) else None
        pipe = redis_client().pipeline(transaction=False)
        counting = self._queue_count(pipe, request, view)
        if failures is not None:
            failures.queue_read(pipe, request)
        if not counting and failures is None:
            return True
        answers = pipe.execute()
        if failures is not None:
            setattr(request, FAILURES_UNCHECKED, False)
            wait = failures.wait_from(answers[-1])
            if wait is not None:
                raise exceptions.Throttled(wait, detail=BLOCKED_DETAIL)
        return self._counted(answers[0]) if counting else True


def counts_failures(view: Any) -> bool:
    """Whether `view` throttles with ApiKeyRateThrottle, which checks the address's failed
    attempts for a working key in its round trip (otherwise authentication checks them)."""
    classes = getattr(view, "throttle_classes", ())
    return any(isinstance(c, type) and issubclass(c, ApiKeyRateThrottle) for c in classes)


class SessionUserRateThrottle(_CountingRateThrottle):
    """Per signed-in user for browser-session calls; anonymous calls by address."""

    scope = "user"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if isinstance(request.auth, ApiKey):
            return None
        if request.user and request.user.is_authenticated:
            ident = str(request.user.pk)
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AuthFailureThrottle(_LiveRateThrottle):
    """Failed API-key authentications per client address (`API_AUTH_FAILURE_RATE`): once an
    address used up its failures in the window, every key it presents is refused with 429
    until the oldest failure leaves the window, so keys cannot be guessed at speed.

    Only failures are written (a working key's call reads them in the key throttle's round
    trip, ApiKeyRateThrottle). The history (timestamps, newest first, comma-separated) lives in
    Redis beside the other throttles' counters; this class is the only code that touches it,
    and a Redis outage propagates as redis' ConnectionError, which the API's exception handler
    answers as 503, never 500.
    """

    scope = "auth_failure"
    num_requests: int | None  # set by SimpleRateThrottle from the rate
    duration: int | None
    history: list[float]
    _failures_key: str

    def get_cache_key(self, request: Request, view: APIView | None) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def queue_read(self, pipe: Any, request: Request) -> bool:
        """Queue the read of this address's failures on `pipe`; False (nothing queued) when
        failures are not limited."""
        self.history = []
        if self.rate is None or not self.duration:
            return False
        self._failures_key = f"{_key_prefix()}:{self.get_cache_key(request, None)}"
        self.now = self.timer()
        pipe.get(self._failures_key)
        return True

    def wait_from(self, stored: bytes | None) -> float | None:
        """Seconds until this address may try a key again, or None when it may now, from what
        `queue_read`'s GET answered."""
        if self.rate is None or not self.duration:
            return None
        window = self.duration
        text = stored.decode() if stored else ""
        self.history = [
            t for t in map(float, filter(None, text.split(","))) if t > self.now - window
        ]
        limit = self.num_requests or 0
        if limit <= 0 or len(self.history) < limit:
            return None
        # Free again when the failure that filled the window (newest first) leaves it.
        oldest: float = self.history[limit - 1]
        return max(window - (self.now - oldest), 1.0)

    def wait_if_blocked(self, request: Request) -> float | None:
        """Seconds until this address may try a key again, or None when it may now."""
        pipe = redis_client().pipeline(transaction=False)
        if not self.queue_read(pipe, request):
            return None
        return self.wait_from(pipe.execute()[0])

    def record_failure(self, request: Request) -> None:
        """Add a failure now (after `wait_if_blocked` or `wait_from` for this request)."""
        if self.rate is None or not self.duration:
            return
        if not hasattr(self, "_failures_key"):
            self.wait_if_blocked(request)
        self.history.insert(0, self.now)
        kept = self.history[: max(self.num_requests or 0, 1)]
        redis_client().set(self._failures_key, ",".join(repr(t) for t in kept), ex=self.duration)


def asgi_client(scope: Mapping[str, Any]) -> Any:
    """What the throttles read of a request (its address, and X-Forwarded-For behind
    NUM_PROXIES), from an ASGI scope: for the endpoints served beside Django (MCP, A2A),
    whose failed keys count with the REST API's (`AuthFailureThrottle`)."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name.lower() == b"x-forwarded-for":
            headers["x-forwarded-for"] = value.decode("latin-1")
    meta = {"REMOTE_ADDR": (scope.get("client") or ("", 0))[0]}
    return SimpleNamespace(META=meta, headers=headers)
