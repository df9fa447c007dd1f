"""Outbound requests to user-supplied URLs (webhook callbacks, the HTTP tool later) must not
reach the platform's own network: loopback, private, link-local (cloud metadata at
169.254.169.254), multicast and reserved addresses are refused after DNS resolution."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from core.exceptions import ValidationFailed


def _refuse(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, fields={field: [message]})


def check_public_url(url: str, *, field: str = "url") -> None:
    """Raise ValidationFailed (naming `field`) unless `url` is http(s) to public addresses only.

    `OUTBOUND_ALLOW_PRIVATE_NETWORKS` lifts the address check (self-hosters whose services
    live on a private network; the test suite's loopback receivers)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse(field, "Use an http:// or https:// URL with a host name.")
    if settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _refuse(field, f"The host '{parts.hostname}' does not resolve.") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise _refuse(
                field,
                f"'{parts.hostname}' resolves to {address}, a private or reserved address; "
                "outbound requests may only go to the public internet.",
            )
