"""Content-Security-Policy and Permissions-Policy on every response, in every mode (development,
tests, production), so a page that breaks the policy breaks on a developer's machine first.

The policy: scripts only from our own origin (the vendored htmx and static/js); no inline script,
no inline event handler, no eval. Style sheets only from our origin; inline `style="..."`
attributes are allowed (`style-src-attr`), inline <style> elements are not. Connections
(htmx, the websocket of live pages) only to our origin; no plugins, no framing, forms post only
to us. Templates say what they want with data attributes that static/js/app.js acts on.

An operator who serves static files from elsewhere (a CDN) adds its origin with
CSP_EXTRA_SOURCES. Django 6 has CSP built in; this middleware goes away then.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


def content_security_policy(extra_sources: str = "") -> str:
    extra = f" {extra_sources.strip()}" if extra_sources.strip() else ""
    directives = {
        "default-src": "'self'" + extra,
        "script-src": "'self'" + extra,
        "style-src": "'self'" + extra,
        "style-src-attr": "'unsafe-inline'",
        "img-src": "'self' data:" + extra,
        "font-src": "'self'" + extra,
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "usb",
    )
)


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.csp = content_security_policy(settings.CSP_EXTRA_SOURCES)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.csp)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response
