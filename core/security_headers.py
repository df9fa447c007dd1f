"""Content-Security-Policy and Permissions-Policy on every response, in every mode (development,
tests, production), so a page that breaks the policy breaks on a developer's machine first.

The policy: scripts only from our own origin (the vendored htmx and static/js); no inline script,
no inline event handler, no eval. Style sheets only from our origin; inline `style="..."`
attributes are allowed (`style-src-attr`), inline <style> elements are not. Connections
(htmx, the websocket of live pages) only to our origin; no plugins, no framing. Forms post only
to us, and may be redirected on only to the hosted pages of the payment provider we send
people to (Checkout, the customer portal, Connect onboarding: `CSP_FORM_ACTION_SOURCES`, plus
the origin of `STRIPE_API_BASE` when it is not Stripe's, the test-mode emulator's pages);
browsers apply `form-action` to a form's redirects too. Templates say what they want with
data attributes that static/js/app.js acts on.

An operator who serves static files from elsewhere (a CDN) adds its origin with
CSP_EXTRA_SOURCES. Django 6 has CSP built in; this middleware goes away then.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse


def content_security_policy(
    extra_sources: str = "", form_targets: Iterable[str] = (), frame_ancestors: str = "'none'"
) -> str:
    extra = f" {extra_sources.strip()}" if extra_sources.strip() else ""
    forms = "".join(f" {target}" for target in form_targets)
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
        "form-action": "'self'" + forms,
        "frame-ancestors": frame_ancestors,
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


STRIPE_API = "https://api.stripe.com"


def form_targets(hosted: Iterable[str], api_base: str) -> tuple[str, ...]:
    """Where a form of ours may be redirected: the payment provider's hosted pages, and the
    origin of an API base that is not Stripe's (the emulator serves its hosted pages there)."""
    targets = list(hosted)
    if api_base and api_base.rstrip("/") != STRIPE_API:
        parts = urlsplit(api_base)
        targets.append(f"{parts.scheme}://{parts.netloc}")
    return tuple(targets)


@functools.lru_cache(maxsize=8)
def _policy(extra_sources: str, targets: tuple[str, ...]) -> str:
    return content_security_policy(extra_sources, targets)


def policy_with_frame_ancestors(frame_ancestors: str) -> str:
    """The same policy, but framable by `frame_ancestors` (the embeddable chat's allowed
    sites, agents/embed/views.py); a view sets it, the middleware then leaves it alone."""
    targets = form_targets(settings.CSP_FORM_ACTION_SOURCES, settings.STRIPE_API_BASE)
    return content_security_policy(settings.CSP_EXTRA_SOURCES, targets, frame_ancestors)


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Read per response (cached): tests and the emulator point STRIPE_API_BASE elsewhere.
        targets = form_targets(settings.CSP_FORM_ACTION_SOURCES, settings.STRIPE_API_BASE)
        csp = _policy(settings.CSP_EXTRA_SOURCES, targets)
        response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response
