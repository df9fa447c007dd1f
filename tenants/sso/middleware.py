"""allauth's sign-in start (`/accounts/oidc/<provider>/login/`, and
`/accounts/saml/<provider>/login/` for SAML), made to fit:

- its confirmation page's form is redirected on to the workspace's IdP, and browsers apply the
  Content-Security-Policy's `form-action` to a form's redirects: that page's policy also allows
  the IdP's origin (core/security_headers.py allows only ours and the payment provider's);
- it reads the IdP's discovery document and lets a connection error through: a down or refused
  IdP is a 503 page that says so, never a 500 (its callback already turns such errors into its
  own error page)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.security_headers import content_security_policy, form_targets
from tenants.sso.selectors import sign_in_by_provider_id

LOGIN_URL_NAME = "openid_connect_login"
SAML_LOGIN_URL_NAME = "saml_login"
OIDC_URL_NAMES = frozenset({LOGIN_URL_NAME, "openid_connect_callback"})


class IdpSignInMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = request.resolver_match
        if (
            match is not None
            and match.url_name in {LOGIN_URL_NAME, SAML_LOGIN_URL_NAME}
            and response.status_code == 200
        ):
            provider_id = match.kwargs.get("provider_id") or match.kwargs.get("organization_slug")
            sign_in = sign_in_by_provider_id(str(provider_id or ""))
            if sign_in is not None:
                idp_url = (
                    sign_in.saml_sso_url if sign_in.kind == "saml" else sign_in.oidc_server_url
                )
                parts = urlsplit(idp_url)
                targets = form_targets(settings.CSP_FORM_ACTION_SOURCES, settings.STRIPE_API_BASE)
                response.headers["Content-Security-Policy"] = content_security_policy(
                    settings.CSP_EXTRA_SOURCES, (*targets, f"{parts.scheme}://{parts.netloc}")
                )
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        match = request.resolver_match
        if not isinstance(exception, requests.RequestException) or (
            match is None or match.url_name not in OIDC_URL_NAMES
        ):
            return None
        message = (
            "The workspace's identity provider cannot be reached right now. Try again in a few "
            "minutes, or ask your workspace owner."
        )
        return render(request, "tenants/sso/refused.html", {"message": message}, status=503)
