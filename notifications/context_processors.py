from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.models import User
from notifications.selectors import unread_count_cached


@dataclass(frozen=True)
class Badge:
    count: int
    known: bool = True  # False: the cache did not hold it; the bell fetches it after load

    @property
    def text(self) -> str:
        return "99+" if self.count > 99 else str(self.count)


def unread(request: HttpRequest) -> dict[str, Any]:
    """`notifications_badge` for the nav bell: the cached unread count, read only when a page
    renders the bell (a JSON response pays nothing), and never a query: on a miss the bell
    fetches its count from /notifications/badge/ once the page has loaded."""
    user = getattr(request, "user", None)
    if not isinstance(user, User) or not user.is_authenticated:
        return {}
    user_id = user.pk

    def badge() -> Badge:
        count = unread_count_cached(user_id=user_id)
        return Badge(count or 0, known=count is not None)

    return {"notifications_badge": SimpleLazyObject(badge)}
