"""Data rights, the reads: a person's export archives and the one they may download."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from core.exceptions import Conflict, NotFound
from privacy.models import ExportJob
from tenants.models import Workspace

if TYPE_CHECKING:
    from accounts.models import User

RECENT_EXPORTS = 5


def exports_for_user(*, user: User, workspace: Workspace | None = None) -> QuerySet[ExportJob]:
    """`user`'s most recent archives: of their account, or of `workspace`."""
    jobs = ExportJob.objects.filter(requested_by=user)
    if workspace is None:
        jobs = jobs.filter(kind=ExportJob.Kind.ACCOUNT)
    else:
        jobs = jobs.filter(workspace=workspace)
    return jobs.select_related("workspace").order_by("-created_at", "-id")[:RECENT_EXPORTS]


def export_get_for_user(*, user: User, export_id: int) -> ExportJob:
    """One of `user`'s archives; anyone else's is NotFound (it does not exist for them)."""
    job = ExportJob.objects.select_related("workspace").filter(pk=export_id).first()
    if job is None or job.requested_by_id != user.pk:
        raise NotFound("No export with that id.")
    return job


def export_get_for_download(*, user: User, export_id: int) -> ExportJob:
    job = export_get_for_user(user=user, export_id=export_id)
    if not job.is_downloadable:
        raise Conflict("This archive is no longer available: request a new export.")
    return job
