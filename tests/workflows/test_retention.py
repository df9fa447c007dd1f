"""Run retention: `manage.py prune_runs` and the daily task that applies each workspace's
`run_retention_days`. Only finished runs older than the cut-off go; queued, running and
waiting runs stay whatever their age; the workspace setting is edited on the settings page."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import WebhookDelivery
from core.exceptions import ValidationFailed
from tenants.models import AuditEvent, Workspace
from tests.helpers.personas import World
from workflows.models import StepRun, Workflow, WorkflowRun, WorkflowVersion
from workflows.periodic import apply_retention
from workflows.retention import parse_age

pytestmark = pytest.mark.django_db

DEFINITION = {
    "schema_version": 1,
    "steps": [{"id": "shape", "type": "transform", "config": {"value": "ok"}}],
    "edges": [],
}


def _workflow(name: str = "Digest") -> Workflow:
    workflow = Workflow.objects.create(name=name)
    version = WorkflowVersion.objects.create(workflow=workflow, number=1, definition=DEFINITION)
    workflow.active_version = version
    workflow.save(update_fields=["active_version"])
    return workflow


def _run(workflow: Workflow, status: str, *, age: timedelta) -> WorkflowRun:
    """A run created `age` ago; finished ones finished then too."""
    when = timezone.now() - age
    run = WorkflowRun.objects.create(
        workflow=workflow,
        version=workflow.active_version,  # type: ignore[misc]
        status=status,
        trigger=WorkflowRun.TriggerKind.API,
    )
    finished = status in ("succeeded", "failed", "cancelled")
    WorkflowRun.objects.filter(pk=run.pk).update(
        created_at=when, started_at=when, finished_at=when if finished else None
    )
    StepRun.objects.create(run=run, node_id="shape", node_type="transform", status="succeeded")
    return run


def _remaining() -> set[int]:
    return set(WorkflowRun.objects.values_list("pk", flat=True))


def test_prune_runs_deletes_old_finished_runs_and_keeps_recent_and_unfinished(
    world: World,
) -> None:
    with schema_context(world.workspace_a.schema_name):
        workflow = _workflow()
        old_done = [
            _run(workflow, status, age=timedelta(days=40))
            for status in ("succeeded", "failed", "cancelled")
        ]
        old_going = [
            _run(workflow, status, age=timedelta(days=40))
            for status in ("queued", "running", "waiting")
        ]
        recent = _run(workflow, "succeeded", age=timedelta(days=5))
        WebhookDelivery.objects.create(
            workflow_run_id=old_done[0].pk,
            event="workflow_run.finished",
            url="https://example.com/h",
            payload={},
        )

    out = StringIO()
    call_command("prune_runs", "--older-than", "30d", "--batch-size", "2", stdout=out)

    with schema_context(world.workspace_a.schema_name):
        assert _remaining() == {r.pk for r in old_going} | {recent.pk}
        assert not StepRun.objects.filter(run_id__in=[r.pk for r in old_done]).exists()
        assert not WebhookDelivery.objects.filter(workflow_run_id=old_done[0].pk).exists()
    assert "alpha: 3 run(s) deleted." in out.getvalue()


def test_dry_run_counts_without_deleting_and_workspace_option_limits_the_scope(
    world: World,
) -> None:
    with schema_context(world.workspace_a.schema_name):
        kept_a = _run(_workflow(), "succeeded", age=timedelta(hours=30))
    with schema_context(world.workspace_b.schema_name):
        old_b = _run(_workflow(), "failed", age=timedelta(hours=30))

    out = StringIO()
    call_command("prune_runs", "--older-than", "24h", "--dry-run", stdout=out)
    assert "alpha: 1 run(s) would be deleted." in out.getvalue()
    assert "bravo: 1 run(s) would be deleted." in out.getvalue()

    call_command("prune_runs", "--older-than", "24h", "--workspace", "bravo", stdout=StringIO())
    with schema_context(world.workspace_a.schema_name):
        assert _remaining() == {kept_a.pk}
    with schema_context(world.workspace_b.schema_name):
        assert old_b.pk not in _remaining()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "30"], "like 30d or 12h"),
        (["--older-than", "0d"], "like 30d or 12h"),
        (["--older-than", "3w"], "like 30d or 12h"),
        (["--older-than", "30d", "--workspace", "nope"], "no workspace with slug 'nope'"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_error(
    world: World, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("prune_runs", *args, stdout=StringIO())


def test_ages_in_days_and_hours() -> None:
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age(" 12H ") == timedelta(hours=12)
    with pytest.raises(ValidationFailed) as excinfo:
        parse_age("-1d")
    assert "older_than" in excinfo.value.fields


def test_the_daily_task_applies_each_workspaces_own_retention(world: World) -> None:
    Workspace.objects.filter(pk=world.workspace_a.pk).update(run_retention_days=7)
    Workspace.objects.filter(pk=world.workspace_b.pk).update(run_retention_days=0)  # keep all
    with schema_context(world.workspace_a.schema_name):
        workflow = _workflow()
        expired = _run(workflow, "succeeded", age=timedelta(days=8))
        fresh = _run(workflow, "succeeded", age=timedelta(days=6))
        waiting = _run(workflow, "waiting", age=timedelta(days=100))
    with schema_context(world.workspace_b.schema_name):
        ancient = _run(_workflow(), "succeeded", age=timedelta(days=3000))

    result = apply_retention()

    assert result == {"alpha": 1}
    with schema_context(world.workspace_a.schema_name):
        assert _remaining() == {fresh.pk, waiting.pk}
        assert expired.pk not in _remaining()
    with schema_context(world.workspace_b.schema_name):
        assert _remaining() == {ancient.pk}


def test_a_finished_sub_workflow_run_stays_while_its_parent_is_running(world: World) -> None:
    with schema_context(world.workspace_a.schema_name):
        workflow = _workflow()
        parent = _run(workflow, "running", age=timedelta(days=60))
        step = StepRun.objects.create(
            run=parent, node_id="child", node_type="sub_workflow", status="waiting"
        )
        child = _run(workflow, "succeeded", age=timedelta(days=60))
        WorkflowRun.objects.filter(pk=child.pk).update(parent_step=step)

    call_command("prune_runs", "--older-than", "30d", stdout=StringIO())

    with schema_context(world.workspace_a.schema_name):
        assert _remaining() == {parent.pk, child.pk}


# --- The workspace setting


def _settings_url() -> str:
    return reverse("workspace_settings", kwargs={"workspace_slug": "alpha"})


def test_owner_sets_the_retention_on_the_settings_page_and_it_is_audited(
    owner_client: Client,
) -> None:
    page = owner_client.get(_settings_url()).content.decode()
    assert 'name="run_retention_days"' in page
    assert 'value="90"' in page

    response = owner_client.post(_settings_url(), {"name": "Alpha Inc", "run_retention_days": 14})

    assert response.status_code == 302
    assert Workspace.objects.get(slug="alpha").run_retention_days == 14
    event = AuditEvent.objects.filter(workspace__slug="alpha", action="workspace.updated").latest(
        "created_at"
    )
    assert event.metadata == {"run_retention_days": {"from": 90, "to": 14}}


@pytest.mark.parametrize("value", ["-1", "3651", "soon"])
def test_out_of_range_retention_is_refused_beside_the_field(
    owner_client: Client, value: str
) -> None:
    response = owner_client.post(
        _settings_url(), {"name": "Alpha Inc", "run_retention_days": value}
    )
    assert response.status_code == 400
    assert "run_retention_days" in response.context["form"].errors
    assert Workspace.objects.get(slug="alpha").run_retention_days == 90


def test_members_and_outsiders_cannot_change_the_retention(
    member_client: Client, outsider_client: Client
) -> None:
    assert member_client.post(_settings_url(), {"run_retention_days": 1}).status_code == 403
    assert outsider_client.post(_settings_url(), {"run_retention_days": 1}).status_code == 404
    assert Workspace.objects.get(slug="alpha").run_retention_days == 90
