from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

from accounts.models import User


def signed_in_user(request: Any) -> User:
    """`request.user` as a `User` for views that require sign-in (HTTP or DRF requests)."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise PermissionDenied("Sign in first.")
    return user
