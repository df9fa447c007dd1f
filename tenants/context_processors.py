from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tenants.selectors import switcher_for_user


def workspace(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "current_workspace": getattr(request, "workspace", None),
        "access": getattr(request, "access", None),
        "switcher": switcher_for_user(user=user),
    }
