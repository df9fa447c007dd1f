"""A locked run's state machine: what a step's outcome changes (a retry, the successors queued
or skipped, joins, map items, waits), and the run's status from its steps."""

from __future__ import annotations

import random
import secrets
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.db.models import Sum

from tenants.schemas import current_schema
from workflows import events, nodes, notices
from workflows.engine.create import run_create
from workflows.engine.locked import LockedRun, Spend
from workflows.engine.sql import ACTIVE, STATE_FIELDS, _state_rows
from workflows.expressions import ExpressionError, render
from workflows.models import RunStatus, StepRun, StepStatus, WorkflowRun, WorkflowVersion

DEFAULT_MAP_CONCURRENCY = 4
MAX_SUBWORKFLOW_DEPTH = 5
HUMAN_WAITS = ("approval", "webhook_wait")
HUMAN_WAITS_OUTCOMES = (nodes.WAIT_APPROVAL, nodes.WAIT_WEBHOOK)


class RunTxn(LockedRun):
    """The changes to one run inside one transaction that holds the run's row lock, as its
    steps' outcomes, decisions and retries make them (writes and commit: LockedRun)."""

    # -- step outcomes ----------------------------------------------------------------------

    def step_succeeded(self, step: StepRun, **fields: Any) -> None:
        self.save_step(
            step,
            status=StepStatus.SUCCEEDED,
            error="",
            finished_at=self.now,
            lease_until=None,
            next_attempt_at=None,
            **fields,
        )
        self.step_finished(step)

    def step_failed(self, step: StepRun, error: str, **fields: Any) -> None:
        self.save_step(
            step,
            status=StepStatus.FAILED,
            error=error,
            finished_at=self.now,
            lease_until=None,
            next_attempt_at=None,
            **fields,
        )
        self.step_finished(step)

    def step_finished(self, step: StepRun) -> None:
        if self.finished:
            return  # a map item that outlived its failed run: kept, nothing follows
        if step.parent_id is not None:
            self.map_progress(self.steps()[step.node_id])
            return
        self.schedule()
        self.settle()

    def attempt_failed(self, step: StepRun, error: str, **fields: Any) -> None:
        """Retry with backoff while attempts remain, else fail the step."""
        node = self.plan.definition.step(step.node_id)
        if step.attempt < node.max_attempts:
            delay = node.backoff_seconds * 2 ** (step.attempt - 1)
            delay += random.uniform(0, min(1.0, delay * 0.1))  # noqa: S311 (jitter)
            self.save_step(
                step,
                status=StepStatus.QUEUED,
                error=error,
                queued_at=self.now,
                next_attempt_at=self.now + timedelta(seconds=delay),
                lease_until=None,
                **fields,
            )
            self.enqueue.append((step.pk, delay))
            return
        self.step_failed(step, error, **fields)

    # -- scheduling ---------------------------------------------------------------------------

    def _verdict(self, node_id: str, steps: dict[str, StepRun]) -> tuple[str, list[str]]:
        """ "ready" (with the predecessors it joins), "skip" or "wait" for a pending step."""
        edges = self.plan.incoming[node_id]
        if not edges:
            return "ready", []
        live: list[str] = []
        dead = unresolved = 0
        for edge in edges:
            source = steps[edge.source]
            if source.status == StepStatus.SUCCEEDED:
                if edge.branch and source.branch != edge.branch:
                    dead += 1
                elif edge.source not in live:
                    live.append(edge.source)
            elif source.status == StepStatus.SKIPPED:
                dead += 1
            else:
                unresolved += 1  # running, queued, waiting, pending, failed or cancelled
        node = self.plan.definition.step(node_id)
        mode = node.config.get("mode", "all") if node.type == "join" else "all"
        if not live and not unresolved:
            return "skip", []
        if mode == "first" and live:
            return "ready", live[:1]
        if mode == "n" and live:
            wanted = int(node.config.get("n") or 1)
            if len(live) >= wanted or not unresolved:
                return "ready", live[:wanted]
            return "wait", []
        if not unresolved:
            return "ready", live
        return "wait", []

    def schedule(self) -> None:
        """Queue every pending step whose predecessors allow it and skip those on branches not
        taken (transitively). After a failure nothing new is queued (skips still propagate)."""
        steps = self.steps()
        failed = any(s.status == StepStatus.FAILED for s in steps.values())
        ready: list[StepRun] = []
        joins: list[tuple[StepRun, list[str]]] = []
        skipped: list[StepRun] = []
        for node_id in self.plan.order:
            step = steps[node_id]
            if step.status != StepStatus.PENDING:
                continue
            verdict, joined = self._verdict(node_id, steps)
            if verdict == "skip":
                step.status = StepStatus.SKIPPED  # later nodes in this pass see it
                skipped.append(step)
            elif verdict == "ready" and not failed:
                step.status = StepStatus.QUEUED
                if step.node_type in ("join", "parallel"):
                    joins.append((step, joined))
                else:
                    ready.append(step)
        self.set_steps(skipped, status=StepStatus.SKIPPED, finished_at=self.now)
        self.queue(ready)
        for step, joined in joins:
            self.save_step(
                step,
                status=StepStatus.QUEUED,
                queued_at=self.now,
                input={"joined": joined},
            )
            self.enqueue.append((step.pk, 0.0))

    def settle(self) -> None:
        """The run's status from its top-level steps: finished when nothing is active."""
        steps = self.steps()
        failed = [s for s in steps.values() if s.status == StepStatus.FAILED]
        if failed:
            stop = [
                s for s in steps.values() if s.status in (StepStatus.QUEUED, StepStatus.WAITING)
            ]
            self.cancel_steps(stop)
        active = [s for s in steps.values() if s.status in ACTIVE]
        if not active:
            if failed:
                first = min(failed, key=lambda s: self.plan.order.index(s.node_id))
                label = self.plan.definition.step(first.node_id).label
                self.finish(RunStatus.FAILED, error=f"{label}: {first.error}")
                return
            leftover = [s for s in steps.values() if s.status == StepStatus.PENDING]
            self.set_steps(leftover, status=StepStatus.SKIPPED, finished_at=self.now)
            output, problem = self.run_output()
            if problem:
                self.finish(RunStatus.FAILED, error=problem)
            else:
                self.finish(RunStatus.SUCCEEDED, output=output)
            return
        human = all(s.status == StepStatus.WAITING and s.node_type in HUMAN_WAITS for s in active)
        status = RunStatus.WAITING if human else RunStatus.RUNNING
        if self.run.status != status:
            self.set_run(status=status)
        if self.run.started_at is None:
            self.set_run(started_at=self.now)

    def run_output(self) -> tuple[Any, str]:
        definition = self.plan.definition
        if definition.output:
            scope = {
                "input": self.run.inputs,
                "steps": self.outputs(self.plan.output_reads),
                "run": self.run_scope(),
            }
            try:
                return render(definition.output, scope), ""
            except ExpressionError as exc:
                return None, f"output: {exc}"
        steps = self.steps()
        sinks = {i for i in definition.sink_ids if steps[i].status == StepStatus.SUCCEEDED}
        return (self.outputs(sinks) if sinks else {}), ""

    def run_scope(self) -> dict[str, Any]:
        return {"id": self.run.pk, "workflow": self.run.workflow_id, "version": self.plan.number}

    # -- waits ---------------------------------------------------------------------------------

    def start_wait(self, step: StepRun, outcome: nodes.Outcome, spend: Spend) -> None:
        self.flush()
        totals = {
            "input_tokens": spend.input_tokens,
            "output_tokens": spend.output_tokens,
            "cost_usd": spend.cost_usd,
        }
        if outcome.wait == nodes.WAIT_ITEMS:
            self.start_map(step, outcome.items or [], outcome.input)
            return
        if outcome.wait == nodes.WAIT_CHILD and outcome.child is not None:
            if self.depth() >= MAX_SUBWORKFLOW_DEPTH:
                self.attempt_failed(
                    step, f"Sub-workflows nest more than {MAX_SUBWORKFLOW_DEPTH} levels deep."
                )
                return
            version = WorkflowVersion.objects.get(pk=outcome.child.version_id)
            child, ready = run_create(
                version=version,
                inputs=outcome.child.inputs,
                trigger=WorkflowRun.TriggerKind.SUBWORKFLOW,
                created_by_id=self.run.created_by_id,
                parent_step_id=step.pk,
            )
            child_id = child.pk
            self.enqueue.extend((i, 0.0) for i in ready)
            self.after.append(lambda: events.run_changed(child_id, ready))
        lease = None
        if outcome.wait == nodes.WAIT_WEBHOOK and outcome.wait_seconds:
            lease = self.now + timedelta(seconds=outcome.wait_seconds)
        token = secrets.token_urlsafe(24) if outcome.wait in HUMAN_WAITS_OUTCOMES else ""
        if outcome.wait == nodes.WAIT_APPROVAL:
            self.after.append(
                partial(
                    notices.approval_waiting,
                    schema=current_schema(),
                    run_id=self.run.pk,
                    workflow_id=self.run.workflow_id,
                    step_id=step.pk,
                    attempt=step.attempt,
                    node_label=self.plan.definition.step(step.node_id).label,
                    step_input=outcome.input,
                )
            )
        self.save_step(
            step,
            status=StepStatus.WAITING,
            input=outcome.input,
            resume_token=token,
            lease_until=lease,
            decided_by_id=None,
            decision_comment="",
            **totals,
        )
        if step.parent_id is None:
            self.settle()

    def depth(self) -> int:
        self.flush()
        depth, parent = 0, self.run.parent_step_id
        while parent is not None and depth <= MAX_SUBWORKFLOW_DEPTH:
            depth += 1
            parent = (
                WorkflowRun.objects.filter(steps__pk=parent)
                .values_list("parent_step_id", flat=True)
                .first()
            )
        return depth

    def start_map(self, step: StepRun, values: list[Any], shown: Any) -> None:
        if not values:
            self.step_succeeded(step, output=[], input=shown)
            return
        self.flush()
        existing = {
            i.item_index: i for i in StepRun.objects.filter(parent_id=step.pk).only(*STATE_FIELDS)
        }
        body_type = str(
            (self.plan.definition.step(step.node_id).config.get("node") or {}).get("type")
        )
        created = StepRun.objects.bulk_create(
            StepRun(
                run_id=self.run.pk,
                node_id=step.node_id,
                node_type=body_type,
                parent_id=step.pk,
                item_index=index,
                input=value,
                status=StepStatus.PENDING,
            )
            for index, value in enumerate(values)
            if index not in existing
        )
        self.changed.update(i.pk for i in created)
        stale = [i.pk for index, i in existing.items() if index is None or index >= len(values)]
        if stale:
            StepRun.objects.filter(pk__in=stale).delete()
        # Resumed: items that succeeded are kept; the others run again.
        for index, item in existing.items():
            if index is not None and index < len(values) and item.status != StepStatus.SUCCEEDED:
                self.save_step(
                    item, status=StepStatus.PENDING, input=values[index], finished_at=None
                )
        self.save_step(step, status=StepStatus.WAITING, input=shown, lease_until=None)
        self.map_progress(step)

    def map_progress(self, map_step: StepRun) -> None:
        """After an item changed: fail the map on a failed item, finish it when every item
        succeeded, else start pending items up to the concurrency limit."""
        if map_step.status != StepStatus.WAITING:
            return
        self.flush()
        items = _state_rows("s.parent_id = %s ORDER BY s.item_index", [map_step.pk])
        failed = next((i for i in items if i.status == StepStatus.FAILED), None)
        if failed is not None:
            self.cancel_items([map_step.pk])
            self.step_failed(map_step, f"item {failed.item_index} failed: {failed.error}")
            return
        if all(i.status == StepStatus.SUCCEEDED for i in items):
            rows = StepRun.objects.filter(parent_id=map_step.pk).order_by("item_index")
            totals = rows.aggregate(
                i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost_usd")
            )
            self.step_succeeded(
                map_step,
                output=list(rows.values_list("output", flat=True)),
                input_tokens=totals["i"] or 0,
                output_tokens=totals["o"] or 0,
                cost_usd=totals["c"] or Decimal(0),
            )
            return
        config = self.plan.definition.step(map_step.node_id).config
        limit = int(config.get("concurrency") or DEFAULT_MAP_CONCURRENCY)
        active = sum(1 for i in items if i.status in ACTIVE)
        pending = [i for i in items if i.status == StepStatus.PENDING]
        self.queue(pending[: max(0, limit - active)])
