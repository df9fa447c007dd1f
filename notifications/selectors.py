"""Reads of a person's notifications. Every read is scoped by the user: there is no way to ask
for someone else's notification by id (it is simply not found)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import QuerySet

from core.exceptions import NotFound
from notifications.kinds import DEFAULTS, NO_EMAIL_CHOICE, Kind
from notifications.models import Notification, Preference

# The unread count is cached per user and dropped whenever that user's notifications change
# (services._forget_counts), so a page costs one cache read, not a query.
COUNT_TTL_SECONDS = 300


def unread_cache_key(user_id: int) -> str:
    return f"notifications:unread:{user_id}"


def notifications_for_user(*, user_id: int) -> QuerySet[Notification]:
    """Everything held for one person, newest first, including notifications they chose to
    receive by email only: what a data export lists and an erasure deletes."""
    return Notification.objects.filter(user_id=user_id).order_by("-created_at", "-id")


def inbox(*, user_id: int, unread_only: bool = False) -> QuerySet[Notification]:
    rows = notifications_for_user(user_id=user_id).filter(in_inbox=True)
    if unread_only:
        rows = rows.filter(read_at__isnull=True)
    return rows.select_related("workspace").only(
        "id",
        "kind",
        "title",
        "body",
        "url",
        "action",
        "read_at",
        "resolved_at",
        "created_at",
        "workspace__name",
        "workspace__slug",
    )


def notification_get(*, user_id: int, notification_id: int) -> Notification:
    found = Notification.objects.filter(user_id=user_id, pk=notification_id).first()
    if found is None:
        raise NotFound("No such notification.")
    return found


def unread_count_cached(*, user_id: int) -> int | None:
    """The count if the cache holds it (what every page reads: no query), else None."""
    count = cache.get(unread_cache_key(user_id))
    return None if count is None else int(count)


def unread_count(*, user_id: int) -> int:
    """The nav badge: cached; on a miss, one count over the partial unread index."""
    key = unread_cache_key(user_id)
    count = cache.get(key)
    if count is None:
        count = Notification.objects.filter(
            user_id=user_id, read_at__isnull=True, in_inbox=True
        ).count()
        cache.set(key, count, COUNT_TTL_SECONDS)
    return int(count)


@dataclass(frozen=True)
class Channels:
    kind: str
    label: str
    in_app: bool
    email: bool
    email_choice: bool  # False: this kind's email is not the person's to switch off


def preferences_for_user(*, user_id: int) -> list[Channels]:
    """Each kind's channels for one person: their choice, else the default."""
    chosen = {p.kind: p for p in Preference.objects.filter(user_id=user_id)}
    rows = []
    for kind in Kind:
        default_in_app, default_email = DEFAULTS[kind]
        row = chosen.get(kind)
        rows.append(
            Channels(
                kind=kind.value,
                label=str(kind.label),
                in_app=row.in_app if row else default_in_app,
                email=(row.email if row else default_email) and kind not in NO_EMAIL_CHOICE,
                email_choice=kind not in NO_EMAIL_CHOICE,
            )
        )
    return rows


def notifications_export(*, user_id: int) -> dict[str, Any]:
    """One person's notifications and preferences as JSON-ready data (for the data-rights
    export)."""
    return {
        "notifications": [
            {
                "kind": n.kind,
                "workspace_id": n.workspace_id,
                "title": n.title,
                "body": n.body,
                "url": n.url,
                "created_at": n.created_at.isoformat(),
                "read_at": n.read_at.isoformat() if n.read_at else None,
                "emailed_at": n.emailed_at.isoformat() if n.emailed_at else None,
            }
            for n in notifications_for_user(user_id=user_id)
        ],
        "preferences": [
            {"kind": c.kind, "in_app": c.in_app, "email": c.email}
            for c in preferences_for_user(user_id=user_id)
        ],
    }
