"""Tenancy for websockets. `TenantMainMiddleware`-style resolution exists only for HTTP, so
this ASGI middleware resolves the workspace from the path before any consumer code runs, and
`tenant_db` runs a consumer's database work inside that workspace's schema."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar, cast

from channels.db import database_sync_to_async
from django_tenants.utils import schema_context

from core.exceptions import NotFound
from tenants.permissions import Access
from tenants.selectors import access_for_user
from tenants.sso.policy import session_refusal

_WS_PATH = re.compile(r"^/ws/w/(?P<slug>[a-z0-9-]{3,40})/")
T = TypeVar("T")


@database_sync_to_async
def _resolve(user: Any, slug: str, session: Any) -> Access | None:
    """The member's access, or None; also None when the workspace's sign-in requirements (SSO,
    two-factor: tenants/sso/policy.py) refuse this session, as its pages do."""
    with schema_context("public"):
        try:
            access = access_for_user(user=user, slug=slug)
        except NotFound:
            return None
        if session_refusal(request=SimpleNamespace(session=session), access=access) is not None:
            return None
        return access


class WorkspaceScopeMiddleware:
    """Sets `scope["access"]` (None for a non-member or a missing workspace); must sit inside
    `AuthMiddlewareStack` so that `scope["user"]` is known."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        scope["access"] = None
        match = _WS_PATH.match(scope.get("path", ""))
        user = scope.get("user")
        if match and user is not None and user.is_authenticated:
            scope["access"] = await _resolve(user, match["slug"], scope.get("session") or {})
        return await self.inner(scope, receive, send)


def tenant_db(access: Access, fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`database_sync_to_async(fn)` that runs in the workspace's schema. Pooled threads keep
    the last search_path, so every call sets it; never call the ORM from a consumer without it."""

    def run(*args: Any, **kwargs: Any) -> T:
        with schema_context(access.workspace.schema_name):
            return fn(*args, **kwargs)

    return cast(Callable[..., Awaitable[T]], database_sync_to_async(run))


def group_name(access: Access, topic: str) -> str:
    """Channel-layer groups are global in Redis: prefix each with the workspace's schema."""
    return f"{access.workspace.schema_name}.{topic}"
