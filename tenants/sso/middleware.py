from __future__ import annotations

from collections.abc import Callable

import requests
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class IdpUnavailableMiddleware:
    """allauth's OpenID Connect sign-in start (`/accounts/oidc/<provider>/login/`) reads the
    IdP's discovery document and lets a connection error through; a down or refused IdP is a
    503 page that says so, never a 500. (Its callback already turns such errors into its own
    error page.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, requests.RequestException):
            return None
        message = (
            "The workspace's identity provider cannot be reached right now. Try again in a few "
            "minutes, or ask your workspace owner."
        )
        return render(request, "tenants/sso/refused.html", {"message": message}, status=503)
