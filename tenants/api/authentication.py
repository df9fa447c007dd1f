from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from core.exceptions import NotFound
from tenants.api.throttling import (
    BLOCKED_DETAIL,
    FAILURES_UNCHECKED,
    AuthFailureThrottle,
    counts_failures,
)
from tenants.models import ApiKey
from tenants.services import api_key_authenticate


class ApiKeyPrincipal:
    """What `request.user` is for a call made with an API key: authenticated, no person."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.email = f"api-key:{api_key.prefix}"

    def __str__(self) -> str:
        return self.email

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer amk_…` (or `X-Api-Key: amk_…`). The key names its workspace."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        header = request.headers.get("Authorization", "")
        secret = request.headers.get("X-Api-Key", "")
        problem = ""
        if header:
            parts = header.split()
            if not parts or parts[0].lower() != self.keyword.lower():
                return None  # another scheme (e.g. Basic): not ours
            if len(parts) == 2:
                secret = parts[1]
            else:
                problem = "Malformed Authorization header: use 'Bearer <api key>'."
        if not secret and not problem:
            return None
        # Every failure below counts against the caller's address (finding 8); an address
        # that used up its failures is refused with any key. The key is looked up first: for
        # a working key the failures are read in the key throttle's round trip (decision 128).
        failures = AuthFailureThrottle()
        try:
            if problem:
                raise NotFound(problem)
            key = api_key_authenticate(secret=secret)
        except NotFound as exc:
            self._refuse_if_blocked(failures, request)
            failures.record_failure(request)
            raise exceptions.AuthenticationFailed(exc.message) from exc
        view = request.parser_context.get("view") if request.parser_context else None
        if counts_failures(view):
            setattr(request, FAILURES_UNCHECKED, True)
        else:
            self._refuse_if_blocked(failures, request)
        return ApiKeyPrincipal(key), key

    @staticmethod
    def _refuse_if_blocked(failures: AuthFailureThrottle, request: Request) -> None:
        wait = failures.wait_if_blocked(request)
        if wait is not None:
            raise exceptions.Throttled(wait, detail=BLOCKED_DETAIL)

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes API-key auth in the OpenAPI schema (drf-spectacular finds it by import)."""

    target_class = "tenants.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "amk_<prefix>_<secret>"}
