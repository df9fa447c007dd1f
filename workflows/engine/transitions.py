"""Transitions started by people or by time: an approval decided, a webhook wait resumed or
expired, failed steps retried, and the recovery of steps whose message or worker was lost.
(Cancelling a run is in workflows/engine/locked.py: a run that stops cancels its children.)"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import recovery
from core.exceptions import Conflict, ValidationFailed
from tenants.schemas import current_schema
from workflows.engine.dispatch import _send_many
from workflows.engine.execute import _advisory_key
from workflows.engine.sql import STATE_FIELDS
from workflows.engine.txn import RunTxn
from workflows.models import RUN_FINISHED, RunStatus, StepRun, StepStatus

logger = logging.getLogger(__name__)

# A queued step not started this long after it was due is re-sent (its message was lost: sent
# while the broker was down, or prefetched by a worker that died). Duplicates are harmless.
STALLED_AFTER = timedelta(seconds=15)
RESEND_EVERY = 30  # seconds: the same step is re-sent at most this often
RECOVER_BATCH = 500


def step_decide(
    *, step_id: int, run_id: int, approved: bool, comment: str, by_id: int | None, by_label: str
) -> None:
    """Record a decision on a waiting approval step (the caller checked the permission)."""
    with transaction.atomic():
        txn = RunTxn.lock(run_id)
        step = StepRun.objects.only(*STATE_FIELDS).filter(pk=step_id).first()
        if (
            txn is None
            or txn.finished
            or step is None
            or step.node_type != "approval"
            or step.status != StepStatus.WAITING
        ):
            raise Conflict(  # the request is fine; the step's state does not allow it
                "This step is not waiting for a decision (it was decided, or the run ended).",
                fields={"step": ["Not waiting for a decision."]},
            )
        if step.parent_id is None:
            step = txn.steps()[step.node_id]
        output = {"approved": approved, "comment": comment, "decided_by": by_label}
        fields: dict[str, Any] = {
            "output": output,
            "branch": "approved" if approved else "rejected",
            "decided_by_id": by_id,
            "decision_comment": comment,
        }
        if not approved and step.node_id not in txn.plan.has_rejected_edge:
            reason = f"Rejected by {by_label}" + (f": {comment}" if comment else ".")
            txn.step_failed(step, reason, **fields)
        else:
            txn.step_succeeded(step, **fields)
        txn.commit()


def webhook_resume(*, token: str, payload: Any) -> StepRun | None:
    """Complete the waiting webhook step with this token; None when there is none."""
    found = (
        StepRun.objects.filter(
            resume_token=token, node_type="webhook_wait", status=StepStatus.WAITING
        )
        .values_list("pk", "run_id")
        .first()
        if token
        else None
    )
    if found is None:
        return None
    step_id, run_id = found
    with transaction.atomic():
        txn = RunTxn.lock(run_id)
        if txn is None or txn.finished:
            return None
        step = txn.steps().get(
            StepRun.objects.filter(pk=step_id).values_list("node_id", flat=True).get()
        )
        if step is None or step.pk != step_id or step.status != StepStatus.WAITING:
            return None
        txn.step_succeeded(step, output=payload)
        txn.commit()
    return StepRun.objects.get(pk=step_id)


def steps_retry(*, run_id: int, step_ids: Iterable[int] | None) -> int:
    """Give failed (and, after a failure, cancelled) top-level steps a new attempt and reopen
    the run. `step_ids` None: every failed step of the run (resume). Returns how many steps
    were retried; succeeded steps are never re-run."""
    with transaction.atomic():
        txn = RunTxn.lock(run_id)
        if txn is None:
            return 0
        if txn.run.status == RunStatus.CANCELLED:
            raise ValidationFailed(
                "A cancelled run cannot be resumed; re-run it instead.",
                fields={"run": ["Cancelled runs are final."]},
            )
        steps = txn.steps()
        wanted = set(step_ids) if step_ids is not None else None
        failed = [
            s
            for s in steps.values()
            if s.status == StepStatus.FAILED and (wanted is None or s.pk in wanted)
        ]
        if not failed:
            raise ValidationFailed(
                "There is no failed step to retry.", fields={"step": ["Nothing failed."]}
            )
        # Steps the failure stopped come back too; their predecessors decide when they run.
        stopped = [s for s in steps.values() if s.status == StepStatus.CANCELLED]
        txn.set_steps(
            [*failed, *stopped],
            status=StepStatus.PENDING,
            finished_at=None,
            error="",
            next_attempt_at=None,
        )
        if txn.finished:
            txn.set_run(status=RunStatus.RUNNING, finished_at=None, error="", output=None)
        txn.schedule()
        txn.settle()
        txn.commit()
        return len(failed)


def webhook_expire(step_id: int) -> bool:
    """Fail a webhook wait whose time ran out (the recovery task calls this)."""
    run_id = StepRun.objects.filter(pk=step_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return False
    with transaction.atomic():
        txn = RunTxn.lock(run_id)
        step = StepRun.objects.only(*STATE_FIELDS, "lease_until").filter(pk=step_id).first()
        if (
            txn is None
            or txn.finished
            or step is None
            or step.status != StepStatus.WAITING
            or step.lease_until is None
            or step.lease_until > txn.now
        ):
            return False
        if step.parent_id is None:
            step = txn.steps()[step.node_id]
        seconds = txn.plan.definition.step(step.node_id).config.get("timeout_seconds")
        txn.step_failed(step, f"No webhook arrived within {seconds} s.")
        txn.commit()
    return True


def stalled_recover(
    *,
    now: Any = None,
    stalled_after: timedelta = STALLED_AFTER,
    queue_backlog: int | None = None,
) -> int:
    """In the current workspace: re-send steps whose executor is gone (running, but nobody
    holds their advisory lock: the worker died or lost its database session; or running past
    their lease), queued steps whose message was lost (queued for longer than `stalled_after`,
    e.g. sent while the broker was down or prefetched by a worker that died), and sub-workflow
    steps whose child ended; fail webhook waits that timed out. Each step is re-sent at most
    once per RESEND_EVERY; queued steps are left alone while the broker's queue holds more
    than RECOVER_BATCH messages (`queue_backlog`: they are most likely still in it). A
    duplicate message is harmless: it finds the step claimed or finished. Returns how many
    steps it touched."""
    now = now or timezone.now()
    old = now - stalled_after
    live_runs = ~Q(run__status__in=RUN_FINISHED)
    running = dict(
        StepRun.objects.filter(live_runs, status=StepStatus.RUNNING).values_list(
            "pk", "lease_until"
        )[:RECOVER_BATCH]
    )
    schema = current_schema()
    orphaned = set(recovery.unheld({pk: _advisory_key(pk) for pk in running}))
    orphaned |= {pk for pk, lease in running.items() if lease is not None and lease < now}
    resend = set(orphaned)
    if running or StepRun.objects.filter(live_runs, status=StepStatus.QUEUED).exists():
        recovery.mark_active(schema)  # swept often while it has work (after Redis lost the list)
    if queue_backlog is None or queue_backlog <= RECOVER_BATCH:
        queued = StepRun.objects.filter(live_runs, status=StepStatus.QUEUED).filter(
            Q(next_attempt_at__isnull=True, queued_at__lt=old) | Q(next_attempt_at__lt=old)
        )
        resend |= set(queued.values_list("pk", flat=True)[:RECOVER_BATCH])
    children_ended = StepRun.objects.filter(
        live_runs,
        status=StepStatus.WAITING,
        node_type="sub_workflow",
        child_runs__status__in=RUN_FINISHED,
    )
    resend |= set(children_ended.values_list("pk", flat=True)[:RECOVER_BATCH])
    due = recovery.resend_due("step", schema, sorted(resend), every_seconds=RESEND_EVERY)
    if due:
        _send_many((step_id, 0.0) for step_id in due)
    expired = StepRun.objects.filter(
        live_runs, status=StepStatus.WAITING, node_type="webhook_wait", lease_until__lt=now
    ).values_list("pk", flat=True)[:RECOVER_BATCH]
    failed = sum(1 for step_id in list(expired) if webhook_expire(step_id))
    if due or failed:
        lost = sorted(set(due) & orphaned)
        logger.warning(
            "recovered %s stalled step(s) (%s whose worker was lost: %s) and expired %s "
            "webhook wait(s) in %s",
            len(due),
            len(lost),
            lost[:20],
            failed,
            schema,
        )
    return len(due) + failed
