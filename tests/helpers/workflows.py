"""Workflows in tests, in the current schema:

- `flow(steps, edges)` and `transform(id, value)` build definition documents;
- `make_workflow(definition)`: a Workflow with `definition` as its published v1 (no validation:
  tests build the documents they need); `start(definition)` also starts a run of it;
- `drain()`: run the engine inline until nothing is ready, as workers would: every queued step
  (backoff delays are not waited for) and every sub-workflow step whose child run ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django_tenants.utils import schema_context

from tenants.permissions import Access
from tests.helpers.personas import World, access_of
from workflows import engine, runs, services
from workflows.models import (
    RUN_FINISHED,
    StepRun,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
)


def flow(steps: list[dict[str, Any]], edges: list[tuple[str, ...]], **extra: Any) -> dict:
    return {
        "schema_version": 1,
        "steps": steps,
        "edges": [
            {"from": e[0], "to": e[1], **({"branch": e[2]} if len(e) > 2 else {})} for e in edges
        ],
        **extra,
    }


def transform(step_id: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "transform", "config": {"value": value}, **extra}


def make_workflow(definition: dict[str, Any], *, name: str = "Flow") -> Workflow:
    workflow = Workflow.objects.create(name=name)
    version = WorkflowVersion.objects.create(workflow=workflow, number=1, definition=definition)
    workflow.active_version = version
    workflow.save(update_fields=["active_version"])
    return workflow


def owners_workflow(world: World, name: str, definition: dict[str, Any]) -> Workflow:
    """A workflow workspace A's owner created (through the service), in A's schema."""
    with schema_context(world.workspace_a.schema_name):
        return services.workflow_create(
            access=access_of(world.owner, world.workspace_a), name=name, definition=definition
        )


def start(
    definition: dict, inputs: dict | None = None, *, access: Access | None = None
) -> WorkflowRun:
    workflow = make_workflow(definition)
    return runs.run_start(
        workflow=workflow,
        inputs=inputs or {},
        trigger=WorkflowRun.TriggerKind.MANUAL,
        access=access,
    )


def step(run: WorkflowRun, node_id: str) -> StepRun:
    return run.steps.get(node_id=node_id, parent__isnull=True)


def drain(*, limit: int = 500, after_each: Callable[[StepRun], None] | None = None) -> list[str]:
    """Execute ready steps one at a time, oldest first; returns "node_id" or "node_id[i]" of
    each step executed. `after_each(step)` runs after every execution (for invariants)."""
    executed: list[str] = []
    live = StepRun.objects.exclude(run__status__in=RUN_FINISHED)
    for _ in range(limit):
        ready = live.filter(status=StepStatus.QUEUED).order_by("queued_at", "id").first()
        if ready is None:
            ready = (
                live.filter(
                    status=StepStatus.WAITING,
                    node_type="sub_workflow",
                    child_runs__status__in=RUN_FINISHED,
                )
                .order_by("id")
                .first()
            )
        if ready is None:
            return executed
        engine.step_execute(ready.pk)
        executed.append(
            ready.node_id if ready.item_index is None else f"{ready.node_id}[{ready.item_index}]"
        )
        if after_each is not None:
            after_each(ready)
    raise AssertionError(f"the runs did not settle after {limit} steps: {executed[-10:]}")
