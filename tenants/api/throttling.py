from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from tenants.models import ApiKey

if TYPE_CHECKING:
    from rest_framework.views import APIView


class _LiveRateThrottle(SimpleRateThrottle):
    """Reads its rate from settings on each request (so configuration changes apply)."""

    def get_rate(self) -> str | None:
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
        return rates.get(self.scope or "")


class ApiKeyRateThrottle(_LiveRateThrottle):
    """Per API key, counted in Redis (the default cache) across all workers."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


class SessionUserRateThrottle(_LiveRateThrottle):
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
