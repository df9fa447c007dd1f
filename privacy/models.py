from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ExportJob(models.Model):
    """One archive being built (or built) on a worker: everything about a person, or a whole
    workspace. Only `requested_by` may download it, until `expires_at`; the file lives under
    `PRIVACY_EXPORT_ROOT`, outside anything the web server serves."""

    class Kind(models.TextChoices):
        ACCOUNT = "account", "Account"
        WORKSPACE = "workspace", "Workspace"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="export_jobs"
    )
    workspace = models.ForeignKey(
        "tenants.Workspace",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="export_jobs",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done.")
    stage = models.CharField(max_length=120, blank=True, help_text="What is being collected.")
    file_name = models.CharField(max_length=255, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="account", workspace__isnull=True)
                | Q(kind="workspace", workspace__isnull=False),
                name="export_workspace_iff_workspace_kind",
            ),
            models.CheckConstraint(condition=Q(progress__lte=100), name="export_progress_pct"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} export {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def is_downloadable(self) -> bool:
        return (
            self.status == self.Status.READY
            and self.expires_at is not None
            and self.expires_at > timezone.now()
        )


class AccountErasure(models.Model):
    """A deleted account: the public rows were anonymised when it was requested; the workspace
    schemas are swept by a worker, which records how far it got so that a restarted sweep goes
    on where the last one stopped. `user` is the anonymised tombstone (no personal data)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="erasure"
    )
    swept_through_workspace_id = models.BigIntegerField(
        default=0, help_text="Workspaces with an id up to this one are swept."
    )
    rows_erased = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"erasure of user #{self.user_id}"
