"""Notifications in tests: deliver the pending emails as the worker's task would."""

from __future__ import annotations

from notifications.models import Notification
from notifications.services import notification_email_send


def deliver_emails() -> int:
    """Send every pending notification email (what `notifications.send_email` does on a
    worker for each); returns how many were sent."""
    pending = Notification.objects.filter(email=Notification.Email.PENDING).order_by("pk")
    return sum(
        notification_email_send(notification_id=pk) for pk in pending.values_list("pk", flat=True)
    )


def kinds_of(user_id: int) -> list[str]:
    return list(
        Notification.objects.filter(user_id=user_id).order_by("pk").values_list("kind", flat=True)
    )
