"""Drafts saved incomplete, seen from the API and the builder's other doors (docs/workflows.md,
"Drafts in the builder"): publishing and running one is refused with the validators' messages
in the standard error envelope, an export of one does not import until it is fixed, and a save
from a stale base is refused by the service (409), whoever calls it."""

from __future__ import annotations

import copy
import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.webhooks import SIGNATURE_HEADER, sign
from tests.helpers.personas import World, access_of, key_client
from workflows import services, triggers
from workflows.models import Trigger, Workflow, WorkflowRun

pytestmark = pytest.mark.django_db

API = "/api/v1/workflows/"
GREETING: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"name": {"type": "string", "required": True}},
    "steps": [
        {"id": "greet", "type": "transform", "config": {"value": "Hello {{ input.name }}"}},
        {"id": "shout", "type": "transform", "config": {"value": "{{ upper(steps.greet) }}"}},
    ],
    "edges": [{"from": "greet", "to": "shout"}],
}


@pytest.fixture
def draft(world: World) -> Workflow:
    """Greeter: v1 published; v2 a draft whose `shout` lost its edge (two entry steps)."""
    with schema_context(world.workspace_a.schema_name):
        access = access_of(world.owner, world.workspace_a)
        workflow = services.workflow_create(access=access, name="Greeter", definition=GREETING)
        services.version_save(
            access=access,
            workflow=workflow,
            definition={**copy.deepcopy(GREETING), "edges": []},
            allow_incomplete=True,
        )
        return workflow


def test_publishing_or_running_a_draft_over_the_api_names_the_step(
    world: World, draft: Workflow
) -> None:
    api = key_client(world, ["workspace.view", "build", "run"])
    # The draft's markers, as the builder shows them.
    shown = api.get(f"{API}{draft.pk}/versions/2/").json()
    assert any(p.startswith("steps[1] (shout)") for p in shown["problems"])
    assert api.get(f"{API}{draft.pk}/versions/1/").json()["problems"] == []
    published = api.post(f"{API}{draft.pk}/versions/2/publish/", {}, format="json")
    assert published.status_code == 400
    error = published.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"].startswith("The workflow definition is not valid: steps[1] (shout)")
    assert any("has no incoming edge" in m for m in error["fields"]["definition"])

    started = api.post(
        f"{API}{draft.pk}/runs/", {"inputs": {"name": "Ada"}, "version": 2}, format="json"
    )
    assert started.status_code == 400
    assert started.json()["error"]["message"].startswith("Version 2 cannot run until it is fixed")
    assert any("shout" in m for m in started.json()["error"]["fields"]["definition"])
    # The active version still runs.
    assert (
        api.post(f"{API}{draft.pk}/runs/", {"inputs": {"name": "Ada"}}, format="json").status_code
        == 202
    )
    with schema_context(world.workspace_a.schema_name):
        assert [r.version.number for r in WorkflowRun.objects.all()] == [1]


def test_a_save_from_a_stale_base_is_refused_over_the_api(world: World, draft: Workflow) -> None:
    api = key_client(world, ["workspace.view", "build"])
    refused = api.post(
        f"{API}{draft.pk}/versions/",
        {"definition": GREETING | {"output": {"x": "1"}}, "based_on_version": 1},
        format="json",
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == (
        "Someone saved version 2 since you opened version 1; nothing was saved. Reload to see "
        "their change, then make yours again."
    )


def test_an_exported_draft_imports_only_once_fixed(
    world: World, owner_client: Client, draft: Workflow
) -> None:
    api = key_client(world, ["workspace.view", "build"])
    exported = api.get(f"{API}{draft.pk}/export/", {"format": "json", "version": 2})
    assert exported.status_code == 200
    imported = api.post(
        f"{API}import/",
        {"document": exported.content.decode(), "format": "json", "name": "Copy"},
        format="json",
    )
    assert imported.status_code == 400
    assert any("shout" in m for m in imported.json()["error"]["fields"]["definition"])


def test_the_builder_marks_a_disconnected_step_and_runs_the_version_on_screen(
    world: World, owner_client: Client, draft: Workflow
) -> None:
    detail = reverse("workflow_detail", kwargs={"workspace_slug": "alpha", "workflow_id": draft.pk})
    page = owner_client.get(detail)
    assert page.context["problem_count"] >= 1
    assert "shout" in page.context["problem_steps"]
    assert page.context["links"]["run"].endswith("?version=2")
    run_form = owner_client.get(page.context["links"]["run"]).content.decode()
    assert "Version 2 cannot run until" in run_form


def test_triggers_and_schedules_pinned_to_a_draft_start_nothing_and_say_why(
    world: World, draft: Workflow, caplog: pytest.LogCaptureFixture
) -> None:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        hook, secret = triggers.webhook_trigger_create(
            access=access, workflow=draft, version_number=2
        )
        schedule = triggers.schedule_save(
            access=access,
            workflow=draft,
            cron="0 9 * * *",
            inputs={"name": "Ada"},
            version_number=2,
        )
    body = json.dumps({"name": "Ada"}).encode()
    header = "HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_")
    fired = Client().post(
        reverse("workflow_hook_trigger", kwargs={"workspace": "alpha", "token": hook.token}),
        body,
        content_type="application/json",
        **{header: sign(secret, int(time.time()), body)},
    )
    assert fired.status_code == 400
    assert fired.json()["error"]["message"].startswith("Version 2 cannot run until it is fixed")
    assert any("shout" in m for m in fired.json()["error"]["fields"]["definition"])

    with schema_context(world.workspace_a.schema_name), caplog.at_level(logging.WARNING):
        due = Trigger.objects.get(pk=schedule.pk).next_run_at + timedelta(minutes=1)
        assert triggers.schedules_fire_due(now=due) == 0
        schedule.refresh_from_db()
        assert schedule.last_fired_at == due  # the slot is spent, not retried every minute
        assert not WorkflowRun.objects.exists()
    assert "could not start a run: Version 2 cannot run until it is fixed" in caplog.text
