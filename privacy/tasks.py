"""Workers' side of data rights. Each task takes ids and calls one service; every one is safe
to receive twice (at-least-once delivery) and to re-run after a worker died mid-way."""

from __future__ import annotations

from celery import shared_task

from privacy import services


@shared_task(name="privacy.build_export", acks_late=True, reject_on_worker_lost=True)
def build_export(job_id: int) -> str | None:
    """Build one export archive. At-least-once: a finished job is left alone, a half-built one
    is rebuilt from the start."""
    job = services.export_build(job_id=job_id)
    return job.status if job is not None else None


@shared_task(name="privacy.erase_account", acks_late=True, reject_on_worker_lost=True)
def erase_account(erasure_id: int) -> int:
    """Sweep every workspace schema for a deleted account's rows; resumes where it stopped."""
    return services.account_erasure_sweep(erasure_id=erasure_id).rows_erased


@shared_task(name="privacy.purge_due_workspaces", acks_late=True, max_retries=0)
def purge_due_workspaces() -> list[int]:
    """Purge the workspaces whose grace period is over (celery beat, hourly)."""
    return services.workspaces_purge_due()


@shared_task(name="privacy.purge_workspace", acks_late=True, reject_on_worker_lost=True)
def purge_workspace(workspace_id: int) -> bool:
    """Purge one workspace now (staff, from the back-office)."""
    return services.workspace_purge(workspace_id=workspace_id, force=True)


@shared_task(name="privacy.expire_exports", acks_late=True, max_retries=0)
def expire_exports() -> int:
    """Delete export archives past their download window (celery beat, hourly)."""
    return services.exports_expire()
