from __future__ import annotations

import math
from collections.abc import Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from django.conf import settings
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
        if self.rate is None or self.num_requests is None or not self.duration:
            return True
        ident = self.get_cache_key(request, view)
        if ident is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        key = f"{_key_prefix()}:{ident}:{window}"
        pipe = redis_client().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, self.duration * 2)
        used = int(pipe.execute()[0])
        if used <= self.num_requests:
            return True
        self._wait = max(1.0, math.ceil(self.duration - now % self.duration))
        return False

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)


def _key_prefix() -> str:
    return str(settings.CACHES["default"].get("KEY_PREFIX") or "am")


class ApiKeyRateThrottle(_CountingRateThrottle):
    """Per API key, counted in Redis (the default cache) across all workers."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


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

    Only failures are counted (a working key costs nothing here). The history lives in the
    default cache (Redis) like the other throttles; this class is the only code that touches
    it, and a Redis outage propagates as redis' ConnectionError, which the API's exception
    handler answers as 503, never 500.
    """

    scope = "auth_failure"
    num_requests: int | None  # set by SimpleRateThrottle from the rate
    duration: int | None

    def get_cache_key(self, request: Request, view: APIView | None) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def _window(self, request: Request) -> int:
        """Load this address's failures still inside the window; the window's length in
        seconds, 0 when failures are not limited."""
        if self.rate is None or not self.duration:
            return 0
        self.key = self.get_cache_key(request, None)
        self.now = self.timer()
        self.history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        return self.duration

    def wait_if_blocked(self, request: Request) -> float | None:
        """Seconds until this address may try a key again, or None when it may now."""
        window = self._window(request)
        limit = self.num_requests or 0
        if not window or limit <= 0 or len(self.history) < limit:
            return None
        # Free again when the failure that filled the window (newest first) leaves it.
        oldest: float = self.history[limit - 1]
        return max(window - (self.now - oldest), 1.0)

    def record_failure(self, request: Request) -> None:
        window = self._window(request)
        if window:
            self.history.insert(0, self.now)
            self.cache.set(self.key, self.history, window)


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
