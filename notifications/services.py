"""Writes on notifications. Apps that emit an event call `notify_on_commit` from the service
where the event happens, inside its transaction:

    notify_on_commit(
        user_ids=[run.created_by_id],
        event=Event(kind=Kind.RUN_FAILED, dedupe_key=f"run_failed:{schema}:agent:{run.pk}",
                    title="...", url="/w/alpha/agents/runs/7/", workspace_id=workspace.pk),
    )

Nothing is written unless that transaction commits; delivering the same event twice makes one
notification per person (the dedupe key), and its email is sent once, by a worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from accounts.models import User
from core import mail
from core.exceptions import ValidationFailed
from core.queue import enqueue
from notifications.kinds import DEFAULTS, NO_EMAIL_CHOICE, Kind
from notifications.models import Notification, Preference
from notifications.selectors import notification_get, unread_cache_key

logger = logging.getLogger(__name__)

# The worker task that emails one notification (notifications/tasks.py declares it).
SEND_EMAIL_TASK = "notifications.send_email"


@dataclass(frozen=True)
class Event:
    kind: str
    dedupe_key: str  # the same event gives the same key (per recipient, a second one is ignored)
    title: str
    body: str = ""
    url: str = ""  # a path on this site
    workspace_id: int | None = None
    subject: str = ""
    action: dict[str, Any] = field(default_factory=dict)


def _forget_counts(user_ids: Iterable[int]) -> None:
    keys = [unread_cache_key(pk) for pk in set(user_ids)]
    if keys:
        cache.delete_many(keys)


def _after_commit(function: Callable[[], object]) -> None:
    transaction.on_commit(function, robust=True)


def notify(*, user_ids: Iterable[int | None], event: Event) -> list[Notification]:
    """Make `event`'s notification for each of `user_ids` (None and repeats ignored) that wants
    it, by their preferences; returns the ones made now (not those an earlier delivery made).
    Emails are sent by a worker after commit."""
    if event.kind not in Kind.values:
        raise ValueError(f"Unknown notification kind {event.kind!r}.")
    wanted = sorted({pk for pk in user_ids if pk is not None})
    if not wanted:
        return []
    chosen = {p.user_id: p for p in Preference.objects.filter(user_id__in=wanted, kind=event.kind)}
    default_in_app, default_email = DEFAULTS[event.kind]
    made: list[Notification] = []
    for user_id in wanted:
        choice = chosen.get(user_id)
        in_app = choice.in_app if choice else default_in_app
        email = (choice.email if choice else default_email) and event.kind not in NO_EMAIL_CHOICE
        if not (in_app or email):
            continue
        try:
            with transaction.atomic():
                notification, created = Notification.objects.get_or_create(
                    user_id=user_id,
                    dedupe_key=event.dedupe_key[:200],
                    defaults={
                        "kind": event.kind,
                        "workspace_id": event.workspace_id,
                        "title": event.title[:200],
                        "body": event.body,
                        "url": event.url[:500],
                        "subject": event.subject[:200],
                        "action": event.action,
                        "in_inbox": in_app,
                        "email": Notification.Email.PENDING if email else Notification.Email.NONE,
                    },
                )
        except IntegrityError:  # a concurrent delivery of the same event made it first
            continue
        if created:
            made.append(notification)
    if made:
        emailed = [n.pk for n in made if n.email == Notification.Email.PENDING]
        _after_commit(partial(_forget_counts, [n.user_id for n in made]))
        for pk in emailed:
            _after_commit(partial(enqueue, SEND_EMAIL_TASK, pk))
    return made


def notify_on_commit(*, user_ids: Iterable[int | None], event: Event) -> None:
    """`notify` once the caller's transaction commits (never for work that rolled back). A
    failure is logged, never raised into the committed work."""
    recipients = list(user_ids)
    _after_commit(partial(notify, user_ids=recipients, event=event))


def notify_later(*, recipients: Callable[[], Iterable[int | None]], event: Event) -> None:
    """Like `notify_on_commit`, with the recipients worked out after the commit (a query the
    caller's transaction need not hold its locks for)."""
    _after_commit(lambda: notify(user_ids=list(recipients()), event=event))


def notifications_resolve(*, subjects: Iterable[str]) -> int:
    """The things these notifications asked for are done (an approval decided, its run
    ended): every recipient's copy loses its action and counts as read."""
    wanted = [s for s in set(subjects) if s]
    if not wanted:
        return 0
    rows = Notification.objects.filter(subject__in=wanted, resolved_at__isnull=True)
    users = list(rows.values_list("user_id", flat=True))
    changed = rows.update(resolved_at=Now(), read_at=Coalesce("read_at", Now()))
    _after_commit(partial(_forget_counts, users))
    return changed


def notifications_resolve_on_commit(*, subjects: Iterable[str]) -> None:
    _after_commit(partial(notifications_resolve, subjects=list(subjects)))


def notification_mark_read(*, user: User, notification_id: int) -> Notification:
    """NotFound for another person's notification, as for one that does not exist."""
    notification = notification_get(user_id=user.pk, notification_id=notification_id)
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
        _after_commit(partial(_forget_counts, [user.pk]))
    return notification


def notifications_mark_all_read(*, user: User) -> int:
    changed = Notification.objects.filter(user_id=user.pk, read_at__isnull=True).update(
        read_at=Now()
    )
    _after_commit(partial(_forget_counts, [user.pk]))
    return changed


@transaction.atomic
def preferences_set(*, user: User, choices: dict[str, tuple[bool, bool]]) -> None:
    """`choices`: kind → (in the inbox, by email). Unknown kinds are refused by name."""
    unknown = sorted(set(choices) - set(Kind.values))
    if unknown:
        raise ValidationFailed(
            f"Unknown notification kind: {', '.join(unknown)}.",
            fields={"kind": [f"One of: {', '.join(Kind.values)}."]},
        )
    for kind, (in_app, email) in choices.items():
        Preference.objects.update_or_create(
            user=user,
            kind=kind,
            defaults={"in_app": in_app, "email": email and kind not in NO_EMAIL_CHOICE},
        )


def notification_email_send(*, notification_id: int) -> bool:
    """Email one notification whose email is pending; True when it was sent now. At least
    once: the row is locked while the mail is handed to the mail server and marked sent in
    the same transaction, so a second delivery of the task sends nothing (a worker killed
    between the two may send it twice)."""
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(pk=notification_id, email=Notification.Email.PENDING)
            .first()
        )
        if notification is None:
            return False
        body = notification.body
        if notification.url:
            body = f"{body}\n\n{settings.SITE_URL.rstrip('/')}{notification.url}".lstrip()
        body += (
            "\n\nChoose which notifications you get by email: "
            + settings.SITE_URL.rstrip("/")
            + "/notifications/preferences/"
        )
        mail.notify(
            subject_text=notification.title, body=body, recipients=[notification.user.email]
        )
        notification.email = Notification.Email.SENT
        notification.emailed_at = timezone.now()
        notification.save(update_fields=["email", "emailed_at"])
    return True


EMAIL_REQUEUE_AFTER = timedelta(minutes=5)
EMAIL_REQUEUE_BATCH = 500


def notification_emails_requeue(*, now: datetime | None = None) -> int:
    """Queue again the emails still pending `EMAIL_REQUEUE_AFTER` after their notification was
    made: their task message was lost (the broker was down when it was queued, or it was
    dropped). Sending is idempotent (`notification_email_send` skips a sent one), so a message
    that was only slow costs nothing. Returns how many were queued (at most a batch; the next
    sweep takes the rest)."""
    cutoff = (now or timezone.now()) - EMAIL_REQUEUE_AFTER
    stale = list(
        Notification.objects.filter(email=Notification.Email.PENDING, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:EMAIL_REQUEUE_BATCH]
    )
    for pk in stale:
        enqueue(SEND_EMAIL_TASK, pk)
    if stale:
        logger.warning("Queued %d notification email(s) again: their message was lost", len(stale))
    return len(stale)


def notifications_delete_for_user(*, user_id: int) -> int:
    """Erase one person's notifications and preferences (data rights); returns how many
    notifications were deleted."""
    with transaction.atomic():
        deleted, _ = Notification.objects.filter(user_id=user_id).delete()
        Preference.objects.filter(user_id=user_id).delete()
    _after_commit(partial(_forget_counts, [user_id]))
    return deleted
