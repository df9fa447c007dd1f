from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.models import User
from tenants.selectors import switcher_for_user


def workspace(request: HttpRequest) -> dict[str, Any]:
    """The signed-in person's workspace context for pages. Anything else in `request.user`
    (anonymous, or the API-key principal DRF puts there for a key's call) gets none: a key
    is not a person and has no switcher."""
    user = getattr(request, "user", None)
    if not isinstance(user, User) or not user.is_authenticated:
        return {}
    return {
        "current_workspace": getattr(request, "workspace", None),
        "access": getattr(request, "access", None),
        "switcher": switcher_for_user(user=user),
    }
