"""Our own notification emails (invitations, budget warnings): the same subject prefix and
signature as allauth's account emails, with the product's name (settings.PRODUCT_NAME)."""

from __future__ import annotations

from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction


def subject(text: str) -> str:
    return f"[{settings.PRODUCT_NAME}] {text}"


def signed(body: str) -> str:
    return f"{body}\n\n— {settings.PRODUCT_NAME}\n{settings.SITE_URL.rstrip('/')}/\n"


def notify(*, subject_text: str, body: str, recipients: list[str]) -> int:
    """Send one plain-text notification (call it after commit)."""
    return send_mail(
        subject=subject(subject_text),
        message=signed(body),
        from_email=None,
        recipient_list=recipients,
    )


def notify_on_commit(*, subject_text: str, body: str, recipients: list[str]) -> None:
    """`notify` once the current transaction commits (never for work that rolled back); a
    failing mail server is logged, not raised into the committed work."""
    transaction.on_commit(
        partial(notify, subject_text=subject_text, body=body, recipients=recipients),
        robust=True,
    )
