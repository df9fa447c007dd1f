"""A person's notifications (public schema: one inbox across every workspace) and their
per-kind channel preferences.

Invariant: one notification per (user, dedupe_key). An event delivered twice (a redelivered
task, a retried transaction's on-commit hook) finds the row the first delivery made."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from notifications.kinds import Kind


class Notification(models.Model):
    class Email(models.TextChoices):
        NONE = "none", "Not emailed"
        PENDING = "pending", "To be emailed"
        SENT = "sent", "Emailed"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    # Where it happened (none for platform-level events); a string reference, since the
    # notifications app sits below tenants in the import layers.
    workspace = models.ForeignKey(
        "tenants.Workspace", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=500, blank=True)  # a path on this site: the thing itself
    dedupe_key = models.CharField(max_length=200)
    # What the event is about, shared by every recipient's copy ("workflows.step:<schema>:<id>"),
    # so deciding an approval can retire every approver's notification of it.
    subject = models.CharField(max_length=200, blank=True)
    # An action the inbox can offer (approvals: {"decide_url": ...}); shown until resolved.
    action = models.JSONField(default=dict, blank=True)
    in_inbox = models.BooleanField(default=True)  # False: the person wants this kind by email only
    read_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    email = models.CharField(max_length=8, choices=Email.choices, default=Email.NONE)
    emailed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "dedupe_key"], name="one_notification_per_event_and_user"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=Kind.values), name="notification_kind_valid"
            ),
        ]
        indexes = [
            # The nav badge's count: unread inbox rows of one user.
            models.Index(
                fields=["user"],
                condition=Q(read_at__isnull=True, in_inbox=True),
                name="notification_unread_idx",
            ),
            models.Index(fields=["user", "-created_at"], name="notification_inbox_idx"),
            # The sweep that queues again emails whose message was lost.
            models.Index(
                fields=["created_at"],
                condition=Q(email="pending"),
                name="notification_email_pending_idx",
            ),
            models.Index(
                fields=["subject"],
                condition=Q(resolved_at__isnull=True) & ~Q(subject=""),
                name="notification_open_subject_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} for user {self.user_id}: {self.title}"

    @property
    def actionable(self) -> bool:
        return bool(self.action) and self.resolved_at is None


class Preference(models.Model):
    """A person's choice for one kind; a kind without a row uses kinds.DEFAULTS."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    in_app = models.BooleanField(default=True)
    email = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user_id", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="one_preference_per_user_kind"),
            models.CheckConstraint(condition=Q(kind__in=Kind.values), name="preference_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} for user {self.user_id}"
