"""Demo workflows for the seeded workspace (config/demo.py): a few library templates, each
with one finished run on the offline model so the run pages have something to show.

Idempotent: a template's workflow is created only when no workflow came from that template
(archived ones count: a user who archived it does not get it back), and a run is made only
for a workflow that has none. Runs execute inline, in this process, like a worker would.
"""

from __future__ import annotations

from django.db.models import Q
from django_tenants.utils import schema_context

from tenants.models import Workspace
from tenants.permissions import Access
from workflows import engine, library, runs
from workflows.library import prepare
from workflows.models import RUN_FINISHED, StepRun, StepStatus, Workflow, WorkflowRun

DEMO_TEMPLATES = (
    "support-triage",
    "content-pipeline",
    "invoice-extraction",
    "meeting-action-items",
)
MAX_STEPS_PER_RUN = 200


def _run_inline(run: WorkflowRun, access: Access) -> None:
    """Execute the run's steps here until it ends; approvals are approved as the seed's
    owner. Call it inside `engine.executing_inline()`: no broker message is sent for them."""
    mine = StepRun.objects.filter(Q(run=run) | Q(run__parent_step__run=run)).exclude(
        run__status__in=RUN_FINISHED
    )
    for _ in range(MAX_STEPS_PER_RUN):
        step = mine.filter(status=StepStatus.QUEUED).order_by("queued_at", "id").first()
        if step is None:
            step = mine.filter(
                status=StepStatus.WAITING,
                node_type="sub_workflow",
                child_runs__status__in=RUN_FINISHED,
            ).first()
        if step is not None:
            engine.step_execute(step.pk)
            continue
        approval = mine.filter(status=StepStatus.WAITING, node_type="approval").first()
        if approval is None:
            return
        runs.approval_decide(
            access=access, step=approval, approved=True, comment="Approved by the demo seed."
        )


def seed_demo_workflows(*, access: Access, workspace: Workspace) -> int:
    """Create what is missing; returns how many workflows were created."""
    created = 0
    with schema_context(workspace.schema_name):
        for key in DEMO_TEMPLATES:
            template = library.template_get(key)
            workflow = Workflow.objects.filter(template_key=key).order_by("pk").first()
            if workflow is None:
                workflow = prepare.workflow_from_template(access=access, key=key)
                created += 1
            if workflow.archived_at is None and not workflow.runs.exists():
                with engine.executing_inline():
                    run = runs.run_start(
                        workflow=workflow,
                        inputs=template.example_inputs,
                        trigger=WorkflowRun.TriggerKind.MANUAL,
                        access=access,
                    )
                    _run_inline(run, access)
    return created
