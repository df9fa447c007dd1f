"""What the current request says about its caller (id, address, user agent), visible to log
records and to code that has no request object: the audit writer reads it here, so services
never take a `request` just to record who called. Outside a request (Celery tasks, management
commands) there is no client: `client_var` is None."""

from __future__ import annotations

import contextvars
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from django.http import HttpRequest

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@dataclass(frozen=True)
class Client:
    ip: str | None
    user_agent: str


client_var: contextvars.ContextVar[Client | None] = contextvars.ContextVar("client", default=None)


def client_of(request: HttpRequest) -> Client:
    return Client(ip=client_ip(request), user_agent=request.headers.get("User-Agent", "")[:255])


def client_ip(request: HttpRequest) -> str | None:
    """The caller's address; `X-Forwarded-For` is trusted only behind NUM_PROXIES proxies."""
    proxies: int = settings.TRUSTED_PROXY_COUNT
    forwarded: str = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if len(hops) >= proxies and _valid_ip(hops[-proxies]):
            return hops[-proxies]
    remote: str = request.META.get("REMOTE_ADDR", "")
    return remote if _valid_ip(remote) else None


def _valid_ip(value: str) -> bool:
    """Only real addresses are stored: a malformed header must never fail the audited action."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
