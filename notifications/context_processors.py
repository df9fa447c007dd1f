from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.models import User
from notifications.selectors import unread_count


def unread(request: HttpRequest) -> dict[str, Any]:
    """`notifications_unread` for the nav badge: read from the cache only when a page shows it
    (a JSON response or an HTMX partial pays nothing)."""
    user = getattr(request, "user", None)
    if not isinstance(user, User) or not user.is_authenticated:
        return {}
    user_id = user.pk
    return {"notifications_unread": SimpleLazyObject(lambda: unread_count(user_id=user_id))}
