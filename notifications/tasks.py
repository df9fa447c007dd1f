"""Notification emails, sent by the workers (never in a request)."""

from __future__ import annotations

from celery import shared_task

from notifications.services import notification_email_send, notification_emails_requeue


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name="notifications.send_email",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
    ignore_result=True,
)
def send_email(notification_id: int) -> bool:
    """At-least-once: a redelivered message finds the email already sent and does nothing."""
    return notification_email_send(notification_id=notification_id)


@shared_task(  # type: ignore[untyped-decorator, unused-ignore]
    name="notifications.requeue_emails", ignore_result=True
)
def requeue_emails() -> int:
    """Beat, every 5 minutes: emails whose message was lost are queued again."""
    return notification_emails_requeue()
