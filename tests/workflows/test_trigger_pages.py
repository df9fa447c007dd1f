"""The trigger pages of a workflow: a webhook's secret is shown once then masked, and works
until rotated; schedules validate cron, time zone and inputs beside the field and preview
their next runs; members with BUILD manage them, viewers may not, outsiders get 404."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.webhooks import SIGNATURE_HEADER, sign
from tenants.models import Membership, Role
from tests.helpers.personas import World, logged_in, make_user
from tests.helpers.workflows import make_workflow
from workflows.models import Trigger, Workflow, WorkflowRun

pytestmark = pytest.mark.django_db

HEADER = "HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_")
DIGEST = {
    "schema_version": 1,
    "inputs": {"topic": {"type": "string", "required": True}},
    "steps": [{"id": "write", "type": "transform", "config": {"value": "{{ input.topic }}"}}],
    "edges": [],
}
SCHEDULE = {
    "name": "Weekday digest",
    "cron": "0 9 * * 1-5",
    "timezone": "Europe/Paris",
    "inputs": '{"topic": "sales"}',
    "version": "",
}


@pytest.fixture
def workflow(world: World) -> Workflow:
    with schema_context(world.workspace_a.schema_name):
        return make_workflow(DIGEST, name="Digest")


def url(name: str, workflow: Workflow, **kwargs: int) -> str:
    return reverse(name, kwargs={"workspace_slug": "alpha", "workflow_id": workflow.pk, **kwargs})


def in_a(world: World) -> Any:
    return schema_context(world.workspace_a.schema_name)


def only_trigger(world: World) -> Trigger:
    with in_a(world):
        return Trigger.objects.select_related("version").get()


def secret_on(page: str) -> str:
    found = re.search(r'<code id="new-secret">(whsec_[^<]+)</code>', page)
    assert found, "no secret on the page"
    return found.group(1)


# --- webhooks -------------------------------------------------------------------------------


def test_a_webhook_secret_is_shown_once_then_masked_and_it_starts_runs(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    empty = owner_client.get(url("workflow_triggers", workflow))
    assert empty.status_code == 200
    assert "No triggers yet" in empty.content.decode()

    created = owner_client.post(url("workflow_trigger_webhook_create", workflow), {"name": "CRM"})

    assert created.status_code == 201
    page = created.content.decode()
    secret = secret_on(page)
    trigger = only_trigger(world)
    assert (trigger.kind, trigger.name, trigger.enabled) == ("webhook", "CRM", True)
    hook_path = f"/hooks/workflows/alpha/{trigger.token}/"
    assert hook_path in page
    assert "Copy it now" in page

    later = owner_client.get(url("workflow_triggers", workflow)).content.decode()
    assert secret not in later
    assert "••••" + secret[-4:] in later
    assert hook_path in later

    body = json.dumps({"topic": "from the CRM"}).encode()
    response = Client().post(
        hook_path,
        body,
        content_type="application/json",
        **{HEADER: sign(secret, int(time.time()), body)},
    )
    assert response.status_code == 202
    with in_a(world):
        assert WorkflowRun.objects.get().inputs == {"topic": "from the CRM"}
    assert only_trigger(world).last_fired_at is not None


def test_rotating_shows_a_new_secret_and_the_old_one_stops_working(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    old = secret_on(
        owner_client.post(url("workflow_trigger_webhook_create", workflow), {}).content.decode()
    )
    trigger = only_trigger(world)

    rotated = owner_client.post(url("workflow_trigger_rotate", workflow, trigger_id=trigger.pk))

    assert rotated.status_code == 200
    new = secret_on(rotated.content.decode())
    assert new != old
    body = json.dumps({"topic": "x"}).encode()
    path = f"/hooks/workflows/alpha/{trigger.token}/"
    for secret, expected in ((old, 401), (new, 202)):
        response = Client().post(
            path,
            body,
            content_type="application/json",
            **{HEADER: sign(secret, int(time.time()), body)},
        )
        assert response.status_code == expected


def test_a_webhook_pinned_to_a_missing_version_is_refused_beside_the_field(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    response = owner_client.post(
        url("workflow_trigger_webhook_create", workflow), {"name": "x", "version": 4}
    )
    assert response.status_code == 400
    assert "No version 4" in response.context["webhook_form"].errors["version"][0]
    with in_a(world):
        assert not Trigger.objects.exists()


# --- schedules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cron", "0 25 * * *", "hour: 25 is out of range 0–23"),
        ("cron", "every morning", "expected 5 fields"),
        ("cron", "", "This field is required."),
        ("timezone", "Mars/Olympus", "IANA time zone name"),
        ("inputs", "{topic: sales}", "Not valid JSON"),
        ("inputs", "[1]", "Enter a JSON object"),
        ("inputs", "{}", "topic"),
        ("version", "3", "No version 3"),
    ],
)
def test_the_schedule_form_names_the_field_that_is_wrong(
    world: World,
    owner_client: Client,
    workflow: Workflow,
    field: str,
    value: str,
    message: str,
) -> None:
    response = owner_client.post(
        url("workflow_trigger_schedule_create", workflow), {**SCHEDULE, field: value}
    )

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert any(message in e for e in errors[field]), errors
    page = response.content.decode()
    assert message in page  # shown on the page, beside the field
    if field == "cron":
        assert page.count(message) == 1  # and not repeated by the preview under it
    with in_a(world):
        assert not Trigger.objects.exists()


def test_a_schedule_is_created_previewed_edited_disabled_and_deleted(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    form = owner_client.get(url("workflow_trigger_schedule_create", workflow))
    assert form.status_code == 200
    assert 'value="UTC"' in form.content.decode()

    preview = owner_client.get(
        url("workflow_trigger_preview", workflow),
        {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"},
    ).content.decode()
    assert "Next runs" in preview
    assert preview.count("<li>") == 3
    assert "09:00" in preview
    bad = owner_client.get(
        url("workflow_trigger_preview", workflow), {"cron": "0 9 * *", "timezone": "UTC"}
    ).content.decode()
    assert "Invalid" in bad
    assert "expected 5 fields" in bad

    created = owner_client.post(url("workflow_trigger_schedule_create", workflow), SCHEDULE)
    assert created.status_code == 302
    trigger = only_trigger(world)
    assert (trigger.kind, trigger.cron, trigger.timezone) == (
        "schedule",
        "0 9 * * 1-5",
        "Europe/Paris",
    )
    assert trigger.inputs == {"topic": "sales"}
    assert trigger.next_run_at is not None
    listing = owner_client.get(url("workflow_triggers", workflow)).content.decode()
    assert "0 9 * * 1-5" in listing
    assert "Europe/Paris" in listing
    assert "Next:" in listing

    edit_url = url("workflow_trigger_schedule_edit", workflow, trigger_id=trigger.pk)
    edit = owner_client.get(edit_url).content.decode()
    assert 'value="0 9 * * 1-5"' in edit
    assert "Next runs" in edit
    saved = owner_client.post(edit_url, {**SCHEDULE, "cron": "*/30 * * * *", "version": "1"})
    assert saved.status_code == 302
    trigger = only_trigger(world)
    assert trigger.cron == "*/30 * * * *"
    assert trigger.version is not None

    owner_client.post(url("workflow_trigger_toggle", workflow, trigger_id=trigger.pk))
    trigger = only_trigger(world)
    assert trigger.enabled is False
    assert trigger.next_run_at is None
    assert "Disabled" in owner_client.get(url("workflow_triggers", workflow)).content.decode()
    owner_client.post(url("workflow_trigger_toggle", workflow, trigger_id=trigger.pk))
    assert only_trigger(world).next_run_at is not None

    deleted = owner_client.post(url("workflow_trigger_delete", workflow, trigger_id=trigger.pk))
    assert deleted.status_code == 302
    with in_a(world):
        assert not Trigger.objects.exists()


# --- who may -------------------------------------------------------------------------------


def _pages(world: World, workflow: Workflow) -> list[tuple[str, str]]:
    with in_a(world):
        hook = Trigger.objects.create(
            workflow=workflow, kind="webhook", token="tok", secret_encrypted=""
        )
        schedule = Trigger.objects.create(
            workflow=workflow, kind="schedule", cron="0 9 * * *", timezone="UTC"
        )
    return [
        ("get", url("workflow_triggers", workflow)),
        ("post", url("workflow_trigger_webhook_create", workflow)),
        ("get", url("workflow_trigger_schedule_create", workflow)),
        ("post", url("workflow_trigger_schedule_create", workflow)),
        ("get", url("workflow_trigger_preview", workflow) + "?cron=*+*+*+*+*"),
        ("get", url("workflow_trigger_schedule_edit", workflow, trigger_id=schedule.pk)),
        ("post", url("workflow_trigger_schedule_edit", workflow, trigger_id=schedule.pk)),
        ("post", url("workflow_trigger_rotate", workflow, trigger_id=hook.pk)),
        ("post", url("workflow_trigger_toggle", workflow, trigger_id=hook.pk)),
        ("post", url("workflow_trigger_delete", workflow, trigger_id=hook.pk)),
    ]


def _state(world: World) -> list[tuple[Any, ...]]:
    with in_a(world):
        return list(
            Trigger.objects.order_by("id").values_list("id", "enabled", "cron", "secret_encrypted")
        )


def test_outsiders_get_404_on_every_trigger_page(
    world: World, outsider_client: Client, workflow: Workflow
) -> None:
    pages = _pages(world, workflow)
    before = _state(world)
    for method, page in pages:
        response = getattr(outsider_client, method)(page, SCHEDULE if method == "post" else None)
        assert response.status_code == 404, (method, page)
    # A's workflow and trigger ids do not exist in the outsider's own workspace either.
    for method, page in pages:
        own = page.replace("/w/alpha/", "/w/bravo/")
        response = getattr(outsider_client, method)(own, SCHEDULE if method == "post" else None)
        assert response.status_code == 404, (method, own)
    assert _state(world) == before


def test_viewers_cannot_manage_triggers_and_members_can(
    world: World, workflow: Workflow, member_client: Client
) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    viewer_client = logged_in(viewer)
    pages = _pages(world, workflow)
    before = _state(world)
    for method, page in pages:
        response = getattr(viewer_client, method)(page, SCHEDULE if method == "post" else None)
        assert response.status_code == 403, (method, page)
    assert _state(world) == before

    assert member_client.get(pages[0][1]).status_code == 200
    created = member_client.post(url("workflow_trigger_schedule_create", workflow), SCHEDULE)
    assert created.status_code == 302
