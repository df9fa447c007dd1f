"""Inbound hooks under /hooks/workflows/: a webhook trigger starts a run only when the request
is signed with the trigger's secret within the time tolerance (else 401 with the reason and no
run); a webhook-wait step resumes with a body signed with the workspace's webhook secret."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from agents.webhooks import SIGNATURE_HEADER, sign, webhook_secret_rotate
from tenants.models import Workspace
from tenants.permissions import Access
from tenants.services import api_key_create
from tests.helpers.personas import World
from tests.helpers.workflows import drain, make_workflow
from workflows import triggers
from workflows.models import StepRun, Trigger, Workflow, WorkflowRun, WorkflowVersion
from workflows.runs import run_start

pytestmark = pytest.mark.django_db

HEADER = "HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_")

ECHO = {
    "schema_version": 1,
    "inputs": {
        "lead": {"type": "string", "required": True},
        "score": {"type": "integer", "default": 0},
    },
    "steps": [{"id": "note", "type": "transform", "config": {"value": "{{ input.lead }}"}}],
    "edges": [],
}

WAIT = {
    "schema_version": 1,
    "steps": [
        {"id": "wait", "type": "webhook_wait", "config": {"timeout_seconds": 3600}},
        {"id": "use", "type": "transform", "config": {"value": "{{ steps.wait.status }}"}},
    ],
    "edges": [{"from": "wait", "to": "use"}],
}


def in_a(world: World) -> Any:
    return schema_context(world.workspace_a.schema_name)


def webhook(world: World, access: Access, **kwargs: Any) -> tuple[Workflow, Trigger, str]:
    with in_a(world):
        workflow = make_workflow(ECHO, name="Leads")
        trigger, secret = triggers.webhook_trigger_create(
            access=access, workflow=workflow, name="CRM", **kwargs
        )
    return workflow, trigger, secret


def post(
    url: str, body: dict[str, Any] | bytes, secret: str | None, *, at: int | None = None
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {}
    if secret is not None:
        headers[HEADER] = sign(secret, at if at is not None else int(time.time()), raw)
    return Client().post(url, raw, content_type="application/json", **headers)


def hook_url(trigger: Trigger, slug: str = "alpha") -> str:
    return reverse("workflow_hook_trigger", kwargs={"workspace": slug, "token": trigger.token})


def run_count(world: World) -> int:
    with in_a(world):
        return WorkflowRun.objects.count()


# --- webhook triggers -----------------------------------------------------------------------


def test_a_signed_call_starts_a_run_with_the_body_as_inputs(
    world: World, owner_access: Access
) -> None:
    workflow, trigger, secret = webhook(world, owner_access)

    response = post(hook_url(trigger), {"lead": "ACME"}, secret)

    assert response.status_code == 202, response.content
    run_id = response.json()["run"]
    assert response.json()["status"] == "queued"
    assert response["Location"] == f"/api/v1/workflows/runs/{run_id}/"
    with in_a(world):
        run = WorkflowRun.objects.get(pk=run_id)
        assert (run.workflow_id, run.trigger, run.trigger_ref_id) == (
            workflow.pk,
            "webhook",
            trigger.pk,
        )
        assert run.inputs == {"lead": "ACME", "score": 0}
        assert Trigger.objects.get(pk=trigger.pk).last_fired_at is not None
        drain()
        run.refresh_from_db()
        assert run.status == "succeeded"
        assert run.output == {"note": "ACME"}

    wrapped = post(hook_url(trigger), {"inputs": {"lead": "Initech", "score": 7}}, secret)
    assert wrapped.status_code == 202
    with in_a(world):
        assert WorkflowRun.objects.get(pk=wrapped.json()["run"]).inputs == {
            "lead": "Initech",
            "score": 7,
        }


def test_a_pinned_trigger_runs_its_version(world: World, owner_access: Access) -> None:
    with in_a(world):
        workflow = make_workflow(ECHO, name="Leads")
        v2 = WorkflowVersion.objects.create(workflow=workflow, number=2, definition=ECHO)
        workflow.active_version = v2
        workflow.save(update_fields=["active_version"])
        trigger, secret = triggers.webhook_trigger_create(
            access=owner_access, workflow=workflow, version_number=1
        )
    response = post(hook_url(trigger), {"lead": "x"}, secret)
    with in_a(world):
        assert WorkflowRun.objects.get(pk=response.json()["run"]).version.number == 1


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, f"The {SIGNATURE_HEADER} header is missing."),
        ("sha256=abc", "must look like t=<unix seconds>,v1=<hex>"),
        ("wrong-secret", "does not match the body"),
        ("tampered", "does not match the body"),
        ("stale", "more than 300 seconds away from our clock"),
        ("future", "more than 300 seconds away from our clock"),
    ],
)
def test_a_bad_signature_is_refused_with_the_reason_and_starts_nothing(
    world: World, owner_access: Access, signature: str | None, reason: str
) -> None:
    _, trigger, secret = webhook(world, owner_access)
    body = json.dumps({"lead": "ACME"}).encode()
    now = int(time.time())
    headers = {
        None: {},
        "sha256=abc": {HEADER: "sha256=abc"},
        "wrong-secret": {HEADER: sign("whsec_not_it", now, body)},
        "tampered": {HEADER: sign(secret, now, b'{"lead": "Evil"}')},
        "stale": {HEADER: sign(secret, now - 301, body)},
        "future": {HEADER: sign(secret, now + 600, body)},
    }[signature]

    response = Client().post(hook_url(trigger), body, content_type="application/json", **headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "signature_invalid"
    assert reason in response.json()["error"]["message"]
    assert run_count(world) == 0


def test_a_rotated_secret_replaces_the_old_one_at_once(world: World, owner_access: Access) -> None:
    _, trigger, old = webhook(world, owner_access)
    with in_a(world):
        new = triggers.webhook_trigger_rotate_secret(access=owner_access, trigger=trigger)

    assert post(hook_url(trigger), {"lead": "x"}, old).status_code == 401
    assert post(hook_url(trigger), {"lead": "x"}, new).status_code == 202
    assert run_count(world) == 1


def test_unknown_disabled_or_misplaced_tokens_are_404_and_start_nothing(
    world: World, owner_access: Access
) -> None:
    workflow, trigger, secret = webhook(world, owner_access)
    body = {"lead": "x"}

    assert post(hook_url(trigger, slug="bravo"), body, secret).status_code == 404
    assert post(hook_url(trigger, slug="no-such-space"), body, secret).status_code == 404
    unknown = reverse("workflow_hook_trigger", kwargs={"workspace": "alpha", "token": "nope"})
    assert post(unknown, body, secret).status_code == 404
    with in_a(world):
        triggers.trigger_set_enabled(access=owner_access, trigger=trigger, enabled=False)
    assert post(hook_url(trigger), body, secret).status_code == 404
    with in_a(world):
        triggers.trigger_set_enabled(access=owner_access, trigger=trigger, enabled=True)
        Workflow.objects.filter(pk=workflow.pk).update(archived_at=workflow.created_at)
    assert post(hook_url(trigger), body, secret).status_code == 404
    assert Client().get(hook_url(trigger)).status_code == 405
    assert run_count(world) == 0


def test_bad_bodies_are_400_naming_what_is_wrong(world: World, owner_access: Access) -> None:
    _, trigger, secret = webhook(world, owner_access)

    not_json = post(hook_url(trigger), b"lead=ACME", secret)
    assert not_json.status_code == 400
    assert "body" in not_json.json()["error"]["fields"]
    a_list = post(hook_url(trigger), b"[1, 2]", secret)
    assert a_list.status_code == 400
    assert "body" in a_list.json()["error"]["fields"]
    missing = post(hook_url(trigger), {"score": 3}, secret)
    assert missing.status_code == 400
    assert any("lead" in m for m in missing.json()["error"]["fields"]["inputs"])
    assert run_count(world) == 0


# --- webhook-wait resume ---------------------------------------------------------------------


def _waiting_step(world: World) -> StepRun:
    with in_a(world):
        workflow = make_workflow(WAIT, name="Payment")
        run = run_start(workflow=workflow, inputs={}, trigger=WorkflowRun.TriggerKind.API)
        drain()
        step = StepRun.objects.get(run=run, node_id="wait")
    assert step.status == "waiting"
    assert step.resume_token
    return step


def test_a_waiting_step_resumes_with_a_signed_body_from_its_api_url(
    world: World, owner_access: Access
) -> None:
    secret = webhook_secret_rotate(access=owner_access)
    step = _waiting_step(world)
    _, key = api_key_create(access=owner_access, name="ci", scopes=["workspace.view"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    shown = api.get(f"/api/v1/workflows/steps/{step.pk}/").json()["resume_url"]
    path = reverse(
        "workflow_hook_resume", kwargs={"workspace": "alpha", "resume_token": step.resume_token}
    )
    assert shown.endswith(path)

    refused = post(path, {"status": "paid"}, "whsec_wrong")
    assert refused.status_code == 401
    assert "does not match" in refused.json()["error"]["message"]
    stale = post(path, {"status": "paid"}, secret, at=int(time.time()) - 3600)
    assert stale.status_code == 401
    with in_a(world):
        assert StepRun.objects.get(pk=step.pk).status == "waiting"

    resumed = post(path, {"status": "paid"}, secret)
    assert resumed.status_code == 200, resumed.content
    assert resumed.json() == {"step": step.pk, "run": step.run_id, "status": "succeeded"}
    with in_a(world):
        drain()
        run = WorkflowRun.objects.get(pk=step.run_id)
        assert run.status == "succeeded"
        assert run.output == {"use": "paid"}
    assert api.get(f"/api/v1/workflows/steps/{step.pk}/").json()["resume_url"] is None

    again = post(path, {"status": "paid"}, secret)
    assert again.status_code == 404  # the step is no longer waiting


def test_resume_is_refused_while_the_workspace_has_no_webhook_secret(world: World) -> None:
    step = _waiting_step(world)
    Workspace.objects.filter(pk=world.workspace_a.pk).update(webhook_secret_encrypted="")
    path = reverse(
        "workflow_hook_resume", kwargs={"workspace": "alpha", "resume_token": step.resume_token}
    )

    response = post(path, {"status": "paid"}, "whsec_anything")

    assert response.status_code == 401
    assert "no webhook secret" in response.json()["error"]["message"]
    with in_a(world):
        assert StepRun.objects.get(pk=step.pk).status == "waiting"
