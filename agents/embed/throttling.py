"""Quotas for visitors, counted in Redis like every API throttle: anonymous tokens per client
address (`embed_address`), questions per visitor (`embed_visitor`) and per address
(`embed_message_address`). The rates are settings (REST_FRAMEWORK's DEFAULT_THROTTLE_RATES)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

if TYPE_CHECKING:
    from rest_framework.views import APIView


class _Live(SimpleRateThrottle):
    def get_rate(self) -> str | None:
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
        return rates.get(self.scope or "")


class AnonymousTokenAddressThrottle(_Live):
    scope = "embed_address"
    message = "Too many new visitors from your address"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class VisitorMessageAddressThrottle(AnonymousTokenAddressThrottle):
    scope = "embed_message_address"
    message = "Too many messages from your address"


class VisitorMessageThrottle(_Live):
    """Per share and end user; the view sets `request.end_user_key` before throttles run."""

    scope = "embed_visitor"
    message = "You have sent too many messages"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        ident = getattr(view, "end_user_key", None)
        return self.cache_format % {"scope": self.scope, "ident": ident} if ident else None
