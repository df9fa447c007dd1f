from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from agents.gateway.setup import ProviderSetup


def provider_setup(request: HttpRequest) -> dict[str, Any]:
    """`provider_setup` on workspace pages (the no-provider banner and first-run checklist)."""
    access = getattr(request, "access", None)
    if access is None or getattr(request, "workspace", None) is None:
        return {}
    return {"provider_setup": ProviderSetup(access)}
