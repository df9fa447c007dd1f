"""The per-transaction view of one run: its row locked, its step rows read and written in
batches, and what happens after commit (workflows/engine/txn.py adds the state machine).

Every write to a run's steps happens under the run's row lock, except the claim of a step to
execute, which the executor's advisory lock covers (workflows/engine/execute.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, Self

from django.db import connection, transaction
from django.db.models import F, Model
from django.utils import timezone

from agents.providers.base import Usage
from core.hooks import RunFinished, run_finished
from tenants.schemas import current_schema
from workflows import events, notices
from workflows.engine.dispatch import _after_commit, _send_many
from workflows.engine.plans import Plan, _plan
from workflows.engine.sql import (
    _LOCK_RUN_SQL,
    _RUN,
    _instances,
    _state_rows,
    _update_sql,
    step_outputs,
)
from workflows.models import (
    RUN_FINISHED,
    RunStatus,
    StepRun,
    StepStatus,
    Workflow,
    WorkflowRun,
)
from workflows.notify import run_finished_webhook


@dataclass
class Spend:
    """Tokens and cost: what an attempt spent, or what it adds to its run's totals."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)

    @classmethod
    def of(cls, usage: Usage, cost: Decimal) -> Spend:
        return cls(usage.tokens_in, usage.output_tokens, cost)

    def minus(self, other: Spend) -> Spend:
        return Spend(
            max(0, self.input_tokens - other.input_tokens),
            max(0, self.output_tokens - other.output_tokens),
            max(Decimal(0), self.cost_usd - other.cost_usd),
        )


class LockedRun:
    """The changes to one run inside one transaction that holds the run's row lock.

    Collects changed step ids, steps to enqueue and run fields; `commit()` saves the run and
    registers the after-commit work (enqueue, child/parent notifications, the live event)."""

    def __init__(self, run: WorkflowRun, plan: Plan) -> None:
        self.run = run
        self.plan = plan
        self.now = timezone.now()
        self.changed: set[int] = set()
        self.enqueue: list[tuple[int, float]] = []
        self.run_fields: set[str] = set()
        self.after: list[Callable[[], None]] = []
        self._steps: dict[str, StepRun] | None = None
        self._writes: list[tuple[type[Model], list[int], dict[str, Any]]] = []
        # (step run id, advisory key): the executor's lock, released by the statement that
        # writes that step (see flush); `unlocked` then says it was.
        self.unlock: tuple[int, int] | None = None
        self.unlocked = False

    @classmethod
    def lock(cls, run_id: int) -> Self | None:
        """Lock the run's row (inside a transaction); None when the run does not exist."""
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_RUN_SQL, [run_id])
            row = cursor.fetchone()
        if row is None:
            return None
        (run,) = _instances(WorkflowRun, _RUN, [row])
        created_at, number = row[len(_RUN) :]
        return cls(run, _plan(run.version_id, created_at, number, run.workflow_id))

    @property
    def finished(self) -> bool:
        return self.run.status in RUN_FINISHED

    # -- reading ------------------------------------------------------------------------------

    def steps(self) -> dict[str, StepRun]:
        """The run's top-level step runs by node id (state columns only)."""
        if self._steps is None:
            self.flush()
            rows = _state_rows("s.run_id = %s AND s.parent_id IS NULL", [self.run.pk])
            self._steps = {s.node_id: s for s in rows}
        return self._steps

    def outputs(self, ids: frozenset[str] | set[str]) -> dict[str, Any]:
        self.flush()
        return step_outputs(self.run.pk, ids)

    # -- writing ------------------------------------------------------------------------------

    def save_step(self, step: StepRun, **fields: Any) -> None:
        self.set_steps([step], **fields)

    def set_steps(self, steps: list[StepRun], **fields: Any) -> None:
        if not steps:
            return
        for step in steps:
            for name, value in fields.items():
                setattr(step, name, value)
        ids = [s.pk for s in steps]
        self._write(StepRun, ids, fields)
        self.changed.update(ids)

    def _write(self, model: type[Model], ids: list[int], fields: dict[str, Any]) -> None:
        """Writes wait for `flush()`: before the transaction reads rows again, and at commit.
        A row written twice is flushed in between (one statement cannot update it twice)."""
        if any(m is model and not set(ids).isdisjoint(i) for m, i, _ in self._writes):
            self.flush()
        self._writes.append((model, ids, fields))

    def flush(self) -> None:
        """Send the pending writes as one statement. If one of them writes the executor's step
        (`self.unlock`), the statement also releases the executor's advisory lock, after that
        row is written: a second delivery then waits on the row until this commits (and finds
        the step finished) instead of taking over a step that is still running."""
        writes, self._writes = self._writes, []
        if not writes:
            return
        parts, params = [], []
        unlock_from = None
        for n, (model, ids, fields) in enumerate(writes):
            sql, values = _update_sql(model, ids, fields)
            parts.append(f"w{n} AS ({sql} RETURNING id)")
            params += values
            if self.unlock and not self.unlocked and model is StepRun and self.unlock[0] in ids:
                unlock_from = n
        with connection.cursor() as cursor:
            if unlock_from is None and len(writes) == 1:
                sql, params = _update_sql(*writes[0])
                cursor.execute(sql, params)
                return
            main = "SELECT 1"
            if unlock_from is not None and self.unlock is not None:
                main = f"SELECT pg_advisory_unlock(%s) FROM w{unlock_from} WHERE id = %s"  # noqa: S608
                params += [self.unlock[1], self.unlock[0]]
            cursor.execute(f"WITH {', '.join(parts)} {main}", params)
            if unlock_from is not None:
                row = cursor.fetchone()
                self.unlocked = bool(row and row[0])

    def queue(self, steps: list[StepRun]) -> None:
        self.set_steps(steps, status=StepStatus.QUEUED, queued_at=self.now, next_attempt_at=None)
        self.enqueue.extend((s.pk, 0.0) for s in steps)

    def set_run(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self.run, name, value)
        self.run_fields.update(fields)

    def add_spend(self, spend: Spend) -> None:
        if spend.input_tokens or spend.output_tokens or spend.cost_usd:
            self.set_run(
                input_tokens=self.run.input_tokens + spend.input_tokens,
                output_tokens=self.run.output_tokens + spend.output_tokens,
                cost_usd=self.run.cost_usd + spend.cost_usd,
            )

    def finished_event(self) -> RunFinished:
        """What `core.hooks.run_finished` tells its subscribers once the finish has committed."""
        run = self.run
        listing_version_id = (
            Workflow.objects.filter(pk=run.workflow_id)
            .values_list("listing_version_id", flat=True)
            .first()
        )
        finished = run.finished_at or self.now
        return RunFinished(
            kind="workflow",
            run_id=run.pk,
            schema_name=current_schema(),
            status=run.status,
            listing_version_id=listing_version_id,
            latency_ms=max(int((finished - run.created_at).total_seconds() * 1000), 0),
            cost_usd=run.cost_usd,
        )

    def commit(self) -> None:
        run = self.run
        if self.run_fields:
            run.revision += 1
            fields = {name: getattr(run, name) for name in sorted(self.run_fields)}
            self._write(WorkflowRun, [run.pk], fields)
            if self.finished and "status" in self.run_fields and run.callback_url:
                self.flush()
                run_finished_webhook(run)
            if self.finished and "status" in self.run_fields:
                self.after.append(partial(run_finished.fire, self.finished_event()))
                self.after.append(
                    partial(
                        notices.run_ended,
                        schema=current_schema(),
                        run_id=run.pk,
                        workflow_id=run.workflow_id,
                        status=run.status,
                        error=run.error or "",
                        ended_at=(run.finished_at or self.now).isoformat(),
                        created_by_id=None if run.parent_step_id else run.created_by_id,
                    )
                )
        self.flush()
        if not (self.run_fields or self.changed or self.enqueue or self.after):
            return
        run_id, enqueue, after = run.pk, list(self.enqueue), list(self.after)
        changed = sorted(self.changed)
        parent_step = run.parent_step_id if self.finished and "status" in self.run_fields else None

        def publish() -> None:
            # (a parent's sub-workflow step reads this run's result when told)
            _send_many([*enqueue, *([(parent_step, 0.0)] if parent_step is not None else [])])
            for function in after:
                function()
            events.run_changed(run_id, changed)

        _after_commit(publish)

    # -- ending -------------------------------------------------------------------------------

    def finish(self, status: str, *, error: str = "", output: Any = None) -> None:
        self.set_run(status=status, error=error, output=output, finished_at=self.now)
        if self.run.started_at is None:
            self.set_run(started_at=self.now)

    def cancel_steps(self, steps: list[StepRun]) -> None:
        """Stop queued and waiting steps (and the pending/queued items of their maps, and the
        runs of their sub-workflows). Running steps are left to finish."""
        if not steps:
            return
        ids = [s.pk for s in steps]
        self.set_steps(steps, status=StepStatus.CANCELLED, finished_at=self.now, lease_until=None)
        self.cancel_items(ids)
        self.cancel_children(ids)

    def cancel_items(self, parent_ids: list[int]) -> None:
        self.flush()
        items = StepRun.objects.filter(
            parent_id__in=parent_ids,
            status__in=(StepStatus.PENDING, StepStatus.QUEUED, StepStatus.WAITING),
        )
        item_ids = list(items.values_list("pk", flat=True))
        if item_ids:
            StepRun.objects.filter(pk__in=item_ids).update(
                status=StepStatus.CANCELLED,
                finished_at=self.now,
                lease_until=None,
                revision=F("revision") + 1,
            )
            self.changed.update(item_ids)
            self.cancel_children(item_ids)

    def cancel_children(self, step_ids: list[int]) -> None:
        self.flush()
        children = list(
            WorkflowRun.objects.filter(parent_step_id__in=step_ids)
            .exclude(status__in=RUN_FINISHED)
            .values_list("pk", flat=True)
        )
        for child in children:
            self.after.append(partial(_cancel_quietly, child, "The parent run stopped."))


# Cancelling a run is here, with the other transitions' building blocks, because a run that
# stops cancels its sub-workflows' runs (after commit, each in its own transaction).


def _cancel_quietly(run_id: int, reason: str) -> None:
    run_cancel_internal(run_id, reason)


def run_cancel_internal(run_id: int, reason: str) -> bool:
    """Cancel a run that has not ended: every pending, queued or waiting step is cancelled; a
    running step finishes but its result is discarded. False when it had ended already."""
    with transaction.atomic():
        txn = LockedRun.lock(run_id)
        if txn is None or txn.finished:
            return False
        stopped = list(
            StepRun.objects.filter(
                run_id=run_id,
                status__in=(StepStatus.PENDING, StepStatus.QUEUED, StepStatus.WAITING),
            ).values_list("pk", flat=True)
        )
        if stopped:
            StepRun.objects.filter(pk__in=stopped).update(
                status=StepStatus.CANCELLED,
                finished_at=txn.now,
                lease_until=None,
                revision=F("revision") + 1,
            )
            txn.changed.update(stopped)
            txn.cancel_children(stopped)
        txn.finish(RunStatus.CANCELLED, error=reason)
        txn.commit()
    return True
