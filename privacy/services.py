"""Data rights, the writes: exports, account erasure, workspace deletion, restore and purge.

Deletion of a workspace is a state in its row (`deletion_requested_at`, `purge_after`,
`purged_at`; tenants/models.py): while it is pending, tenants' access gate refuses everyone
(pages show a clear page, API keys are refused) and an owner or staff may restore it; after
`purge_after`, `workspace_purge` drops its schema and files. Every step is audited and every
worker step is idempotent (docs/privacy.md)."""

from __future__ import annotations

import logging
import secrets
import shutil
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Count, ProtectedError, Q, RestrictedError
from django.utils import timezone
from django_tenants.utils import schema_context, schema_exists

from core.exceptions import Conflict, NotFound, PermissionDenied, ValidationFailed
from core.queue import enqueue
from privacy import archives, erasure
from privacy.models import AccountErasure, ExportJob
from tenants import audit
from tenants.audit import Action
from tenants.models import AuditEvent, Membership, Role, Workspace
from tenants.permissions import Access, Perm
from tenants.schemas import live_workspaces

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)


def export_root() -> Path:
    root = Path(settings.PRIVACY_EXPORT_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    return root


def export_path(job: ExportJob) -> Path | None:
    return export_root() / job.file_name if job.file_name else None


def _enqueue_build(job: ExportJob) -> None:
    job_id = job.pk
    transaction.on_commit(lambda: enqueue("privacy.build_export", job_id))


# --- exports -----------------------------------------------------------------------------------
@transaction.atomic
def account_export_request(*, user: User) -> ExportJob:
    """Queue an archive of everything about `user`; one at a time (a second request while one
    is being built returns that one)."""
    active = ExportJob.objects.filter(
        requested_by=user,
        kind=ExportJob.Kind.ACCOUNT,
        status__in=[ExportJob.Status.QUEUED, ExportJob.Status.RUNNING],
    ).first()
    if active is not None:
        return active
    job = ExportJob.objects.create(kind=ExportJob.Kind.ACCOUNT, requested_by=user)
    audit.record(action=Action.ACCOUNT_EXPORT_REQUESTED, actor=user, target=job)
    _enqueue_build(job)
    return job


@transaction.atomic
def workspace_export_request(
    *, access: Access | None = None, staff: User | None = None, workspace: Workspace | None = None
) -> ExportJob:
    """Queue an archive of a whole workspace, for one of its owners (`access`) or for staff
    (`staff` and `workspace`, from the back-office)."""
    if access is not None:
        access.require(Perm.WORKSPACE_DELETE)  # owners only: the archive holds everything
        if access.user is None:
            raise PermissionDenied("Exports are requested by a person, not an API key.")
        workspace, by = access.workspace, access.user
    elif staff is not None and staff.is_staff and workspace is not None:
        by = staff
    else:
        raise PermissionDenied("Only an owner or staff may export a workspace.")
    active = ExportJob.objects.filter(
        requested_by=by,
        workspace=workspace,
        status__in=[ExportJob.Status.QUEUED, ExportJob.Status.RUNNING],
    ).first()
    if active is not None:
        return active
    job = ExportJob.objects.create(
        kind=ExportJob.Kind.WORKSPACE, requested_by=by, workspace=workspace
    )
    audit.record(
        action=Action.WORKSPACE_EXPORT_REQUESTED,
        actor=by,
        workspace=workspace,
        target=job,
        metadata={"by_staff": access is None},
    )
    _enqueue_build(job)
    return job


def export_build(*, job_id: int) -> ExportJob | None:
    """Build the archive of job `job_id` (the worker's task body). At-least-once safe: a job
    already finished is left alone; one left `running` by a dead worker is built again from
    the start into a fresh file (the partial one is replaced)."""
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or not job.is_active:
            return job
        job.status = ExportJob.Status.RUNNING
        job.progress = 0
        job.save(update_fields=["status", "progress", "updated_at"])

    def progress(percent: int, stage: str) -> None:
        ExportJob.objects.filter(pk=job_id).update(
            progress=min(percent, 99), stage=stage[:120], updated_at=timezone.now()
        )

    name = f"{job.kind}-{job.pk}-{secrets.token_hex(12)}.zip"
    partial = Path(settings.PRIVACY_EXPORT_ROOT) / f"{name}.part"
    try:
        export_root()
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            if job.kind == ExportJob.Kind.ACCOUNT:
                archives.write_account(archive, job.requested_by, progress)
            elif job.workspace is not None:  # always, by the check constraint
                archives.write_workspace(archive, job.workspace, progress)
        partial.rename(export_root() / name)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        logger.exception("export %s failed", job_id)
        ExportJob.objects.filter(pk=job_id).update(
            status=ExportJob.Status.FAILED, error=str(exc)[:300], finished_at=timezone.now()
        )
        raise
    now = timezone.now()
    previous = job.file_name
    job.file_name = name
    job.size_bytes = (export_root() / name).stat().st_size
    job.status = ExportJob.Status.READY
    job.progress = 100
    job.stage = ""
    job.finished_at = now
    job.expires_at = now + timedelta(hours=settings.PRIVACY_EXPORT_TTL_HOURS)
    job.save()
    if previous and previous != name:
        (export_root() / previous).unlink(missing_ok=True)
    return job


def export_downloaded(*, job: ExportJob, user: User) -> None:
    action = (
        Action.ACCOUNT_EXPORT_DOWNLOADED
        if job.kind == ExportJob.Kind.ACCOUNT
        else Action.WORKSPACE_EXPORT_DOWNLOADED
    )
    audit.record(action=action, actor=user, workspace=job.workspace, target=job)


def _delete_export_files(jobs: list[ExportJob]) -> None:
    for job in jobs:
        path = export_path(job)
        if path is not None:
            path.unlink(missing_ok=True)
            Path(f"{path}.part").unlink(missing_ok=True)


def exports_expire(*, now: object = None) -> int:
    """Delete the files of archives past `expires_at` (the periodic task); returns how many."""
    due = list(
        ExportJob.objects.filter(status=ExportJob.Status.READY, expires_at__lte=timezone.now())
    )
    _delete_export_files(due)
    ExportJob.objects.filter(pk__in=[j.pk for j in due]).update(status=ExportJob.Status.EXPIRED)
    return len(due)


# --- account deletion --------------------------------------------------------------------------
def account_deletion_blockers(*, user: User) -> list[Workspace]:
    """Workspaces `user` is the only owner of while others are members: deleting the account
    would leave them without an owner, so the user must hand over ownership first."""
    owned = Membership.objects.filter(user=user, role=Role.OWNER).values("workspace_id")
    return list(
        Workspace.objects.filter(pk__in=owned, purged_at__isnull=True)
        .annotate(
            owners=Count("memberships", filter=Q(memberships__role=Role.OWNER)),
            members=Count("memberships"),
        )
        .filter(owners=1, members__gt=1)
        .order_by("name")
    )


def account_sole_workspaces(*, user: User) -> list[Workspace]:
    """Workspaces `user` is the only member of: deleting the account schedules their deletion."""
    mine = Membership.objects.filter(user=user).values("workspace_id")
    return list(
        Workspace.objects.filter(pk__in=mine, purged_at__isnull=True, is_template=False)
        .annotate(members=Count("memberships"))
        .filter(members=1)
        .order_by("name")
    )


SSO_DELETE_SIGN_IN_WINDOW = timedelta(minutes=10)


def _confirm_it_is_them(
    user: User, *, password: str, confirm_email: str, now: datetime | None
) -> None:
    """An account with a password confirms with it. One without (it signs in only through a
    workspace's identity provider) confirms with its address, typed, and a sign-in within
    SSO_DELETE_SIGN_IN_WINDOW: a session left open on a shared computer is not enough."""
    if user.has_usable_password():
        if not password or not user.check_password(password):
            message = "The password is not correct."
            raise ValidationFailed(message, fields={"password": [message]})
        return
    if confirm_email.strip().lower() != user.email.lower():
        message = f"Type {user.email} exactly, to confirm."
        raise ValidationFailed(message, fields={"confirm_email": [message]})
    recent = (now or timezone.now()) - SSO_DELETE_SIGN_IN_WINDOW
    if user.last_login is None or user.last_login < recent:
        minutes = int(SSO_DELETE_SIGN_IN_WINDOW.total_seconds() // 60)
        message = (
            f"Sign out and sign in again through your organisation's sign-in (SSO), then "
            f"delete the account within {minutes} minutes: this confirms it is you."
        )
        raise ValidationFailed(message, fields={"confirm_email": [message]})


def account_delete(
    *, user: User, password: str = "", confirm_email: str = "", now: datetime | None = None
) -> AccountErasure:
    """Erase `user`: confirms it is them (`_confirm_it_is_them`) and checks the blockers,
    schedules the deletion of the workspaces only they belong to, anonymises every public row
    about them and the account itself (in one transaction), then queues the sweep of the
    workspace schemas."""
    _confirm_it_is_them(user, password=password, confirm_email=confirm_email, now=now)
    blockers = account_deletion_blockers(user=user)
    if blockers:
        names = ", ".join(w.name for w in blockers)
        raise Conflict(
            f"You are the only owner of {names}, which other people use. Make someone else an "
            "owner (Members page) or remove the other members first."
        )
    with transaction.atomic():
        for workspace in account_sole_workspaces(user=user):
            if workspace.deletion_requested_at is None:
                _schedule_deletion(workspace, by=user, reason="account deleted")
        subject = erasure.Subject(
            user_id=user.pk, email=user.email, label=f"Deleted user #{user.pk}"
        )
        _delete_export_files(list(ExportJob.objects.filter(requested_by=user)))
        rows = erasure.erase_public(subject)
        erasure.anonymise_account(user, subject)
        record = AccountErasure.objects.create(user=user, rows_erased=rows)
        event = audit.record(
            action=Action.ACCOUNT_DELETED,
            target=user,
            target_label=subject.label,
            metadata={"user_id": user.pk},
        )
        # The request's address and browser are theirs: not kept on the very entry saying so.
        AuditEvent.objects.filter(pk=event.pk).update(ip_address=None, user_agent="")
        record_id = record.pk
        transaction.on_commit(lambda: enqueue("privacy.erase_account", record_id))
    return record


def account_erasure_sweep(*, erasure_id: int) -> AccountErasure:
    """Erase the person's rows in every workspace schema, oldest workspace first, recording
    progress after each one: a sweep that dies goes on from there when sent again, and a
    finished one does nothing."""
    record = AccountErasure.objects.select_related("user").get(pk=erasure_id)
    if record.finished_at is not None:
        return record
    # The address is gone from the account; every workspace row is found by the id.
    subject = erasure.Subject(
        user_id=record.user_id, email=record.user.email, label=f"Deleted user #{record.user_id}"
    )
    workspaces = live_workspaces().filter(pk__gt=record.swept_through_workspace_id).order_by("pk")
    for workspace in workspaces.iterator():
        with transaction.atomic(), schema_context(workspace.schema_name):
            rows = erasure.erase_workspace(subject)
        AccountErasure.objects.filter(pk=record.pk).update(
            swept_through_workspace_id=workspace.pk, rows_erased=record.rows_erased + rows
        )
        record.rows_erased += rows
        record.swept_through_workspace_id = workspace.pk
    record.finished_at = timezone.now()
    record.save(update_fields=["finished_at"])
    return record


# --- workspace deletion, restore, purge ------------------------------------------------------
def _schedule_deletion(workspace: Workspace, *, by: User | None, reason: str) -> None:
    now = timezone.now()
    workspace.deletion_requested_at = now
    workspace.deletion_requested_by = by
    workspace.purge_after = now + timedelta(days=settings.PRIVACY_WORKSPACE_GRACE_DAYS)
    workspace.save(
        update_fields=[
            "deletion_requested_at",
            "deletion_requested_by",
            "purge_after",
            "updated_at",
        ]
    )
    # Recorded outside the workspace (workspace=None, the workspace as target) so the trail
    # survives the purge, which deletes the workspace's own log with it.
    audit.record(
        action=Action.WORKSPACE_DELETION_REQUESTED,
        actor=by,
        target=workspace,
        metadata={
            "slug": workspace.slug,
            "purge_after": workspace.purge_after.isoformat(),
            "reason": reason,
        },
    )


@transaction.atomic
def workspace_deletion_request(
    *,
    confirm: str,
    access: Access | None = None,
    staff: User | None = None,
    workspace: Workspace | None = None,
) -> Workspace:
    """Schedule the deletion of a workspace: an owner (`access`, typing its address in
    `confirm`) or staff from the back-office (`staff`, `workspace`)."""
    if access is not None:
        access.require(Perm.WORKSPACE_DELETE)
        if access.user is None:
            raise PermissionDenied("Workspaces are deleted by a person, not an API key.")
        workspace, by = access.workspace, access.user
    elif staff is not None and staff.is_staff and workspace is not None:
        by = staff
    else:
        raise PermissionDenied("Only an owner or staff may delete a workspace.")
    if confirm.strip() != workspace.slug:
        message = f"Type the workspace address, {workspace.slug}, to confirm."
        raise ValidationFailed(message, fields={"confirm": [message]})
    locked = Workspace.objects.select_for_update().get(pk=workspace.pk)
    if locked.is_template:
        raise PermissionDenied("The template workspace cannot be deleted.")
    if locked.deletion_requested_at is not None or locked.purged_at is not None:
        raise Conflict("This workspace is already scheduled for deletion.")
    _schedule_deletion(locked, by=by, reason="requested")
    return locked


def pending_workspace_for_restore(*, user: User, slug: str) -> Workspace:
    """A workspace scheduled for deletion that `user` may restore: one they own, or any for
    staff. Anyone else: NotFound, as for a workspace that does not exist."""
    workspace = Workspace.objects.filter(
        slug=slug, deletion_requested_at__isnull=False, purged_at__isnull=True
    ).first()
    if workspace is None:
        raise NotFound("No workspace scheduled for deletion at that address.")
    if (
        not user.is_staff
        and not Membership.objects.filter(user=user, workspace=workspace, role=Role.OWNER).exists()
    ):
        raise NotFound("No workspace scheduled for deletion at that address.")
    return workspace


@transaction.atomic
def workspace_restore(*, workspace: Workspace, by: User) -> Workspace:
    """Cancel a scheduled deletion (owner or staff; callers check with
    `pending_workspace_for_restore` or the admin's staff check)."""
    locked = Workspace.objects.select_for_update().get(pk=workspace.pk)
    if locked.purged_at is not None:
        raise Conflict("This workspace has already been deleted for good.")
    if locked.deletion_requested_at is None:
        return locked
    locked.deletion_requested_at = None
    locked.deletion_requested_by = None
    locked.purge_after = None
    locked.save(
        update_fields=[
            "deletion_requested_at",
            "deletion_requested_by",
            "purge_after",
            "updated_at",
        ]
    )
    audit.record(
        action=Action.WORKSPACE_RESTORED,
        actor=by,
        target=locked,
        metadata={"slug": locked.slug, "by_staff": by.is_staff},
    )
    return locked


def workspace_files_dir(workspace: Workspace) -> Path:
    """Where files of the workspace would live on disk (uploads kept outside the database)."""
    return Path(settings.MEDIA_ROOT) / "workspaces" / str(workspace.schema_name)


def workspace_purge(*, workspace_id: int, force: bool = False) -> bool:
    """Delete a workspace for good once its grace period is over (`force`: staff, now):
    its files and export archives, its schema (DROP SCHEMA through django-tenants' delete) and
    its row with everything that cascades from it. When financial records name it (purchases,
    a publisher's ledger: kept as the law requires) the row stays as an anonymous tombstone
    with `purged_at` set, its members, keys and invitations deleted.

    Idempotent, and safe to run again after dying at any point: files go first (missing ones
    are fine), then one transaction drops the schema and changes the rows."""
    workspace = Workspace.objects.filter(pk=workspace_id).first()
    if workspace is None or workspace.purged_at is not None:
        return False
    if workspace.deletion_requested_at is None or workspace.is_template:
        return False
    if not force and (workspace.purge_after is None or workspace.purge_after > timezone.now()):
        return False
    # Files first: not transactional, and deleting them twice is harmless.
    jobs = list(ExportJob.objects.filter(workspace=workspace))
    _delete_export_files(jobs)
    shutil.rmtree(workspace_files_dir(workspace), ignore_errors=True)

    slug, schema = workspace.slug, workspace.schema_name
    with transaction.atomic():
        locked = Workspace.objects.select_for_update().filter(pk=workspace_id).first()
        if locked is None or locked.purged_at is not None or locked.deletion_requested_at is None:
            return False  # restored or purged meanwhile
        kept = False
        try:
            with transaction.atomic():
                locked.delete(force_drop=True)  # DROP SCHEMA … CASCADE, then the row
        except (ProtectedError, RestrictedError):
            kept = True
            locked._drop_schema(force_drop=True)  # noqa: SLF001 (what delete() runs first)
            locked.memberships.all().delete()
            locked.invitations.all().delete()
            locked.api_keys.all().delete()
            ExportJob.objects.filter(workspace_id=workspace_id).delete()
            locked.name = f"Deleted workspace #{workspace_id}"
            locked.purged_at = timezone.now()
            locked.save(update_fields=["name", "purged_at", "updated_at"])
        audit.record(
            action=Action.WORKSPACE_PURGED,
            target_label=slug,
            metadata={
                "workspace_id": workspace_id,
                "slug": slug,
                "schema": schema,
                "row_kept_for_financial_records": kept,
            },
        )
    if schema_exists(schema):  # never expected: the transaction above dropped it
        logger.error("schema %s still exists after purging workspace %s", schema, workspace_id)
    return True


def workspaces_purge_due() -> list[int]:
    """Purge every workspace whose grace period is over (the periodic task); one failing
    workspace does not stop the others, and the next run retries it."""
    due = Workspace.objects.filter(
        deletion_requested_at__isnull=False,
        purged_at__isnull=True,
        purge_after__lte=timezone.now(),
    ).values_list("pk", flat=True)
    purged = []
    for workspace_id in list(due):
        try:
            if workspace_purge(workspace_id=workspace_id):
                purged.append(workspace_id)
        except Exception:
            logger.exception("purging workspace %s failed; retried next run", workspace_id)
    return purged
