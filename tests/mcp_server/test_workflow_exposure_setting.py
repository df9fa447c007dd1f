"""Builders choose, in the workflow's Details, whether it is an MCP tool (default: not); the
change is audited; viewers see the choice without a form; nobody else can change it."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from tenants.models import AuditEvent, Membership, Role
from tests.helpers.personas import World, logged_in, make_user
from tests.helpers.workflows import flow, owners_workflow, transform
from workflows import services
from workflows.models import Workflow

pytestmark = pytest.mark.django_db

FORM = {"name": "Triage", "description": "", "category": ""}


def _url(name: str, workflow: Workflow) -> str:
    return reverse(name, kwargs={"workspace_slug": "alpha", "workflow_id": workflow.pk})


@pytest.fixture
def workflow(world: World) -> Workflow:
    return owners_workflow(world, "Triage", flow([transform("reply", "we are on it")], []))


def _exposed(world: World, workflow: Workflow) -> bool:
    with schema_context(world.workspace_a.schema_name):
        return Workflow.objects.get(pk=workflow.pk).mcp_exposed


def test_a_workflow_is_not_an_mcp_tool_until_a_builder_ticks_the_box_and_it_is_audited(
    world: World, workflow: Workflow, owner_client: Client, member_client: Client
) -> None:
    page = owner_client.get(_url("workflow_detail", workflow)).content.decode()
    assert "Offer as an MCP tool" in page
    assert re.search(r'<input type="checkbox" name="mcp_exposed"(?![^>]* checked)[^>]*>', page)
    assert not _exposed(world, workflow)

    saved = owner_client.post(_url("workflow_settings", workflow), {**FORM, "mcp_exposed": "on"})
    assert saved.status_code == 302
    assert _exposed(world, workflow)
    page = owner_client.get(_url("workflow_detail", workflow)).content.decode()
    assert re.search(r'<input type="checkbox" name="mcp_exposed"[^>]* checked', page)
    with schema_context(world.workspace_a.schema_name):
        assert workflow.versions.count() == 1  # a setting, not a new version
    event = AuditEvent.objects.get(
        workspace=world.workspace_a, action=services.WORKFLOW_UPDATED, actor=world.owner
    )
    assert event.metadata == {"changes": {"mcp_exposed": [False, True]}}

    member_client.post(_url("workflow_settings", workflow), FORM)  # an unticked box is not sent
    assert not _exposed(world, workflow)
    unticked = AuditEvent.objects.get(action=services.WORKFLOW_UPDATED, actor=world.member)
    assert unticked.metadata == {"changes": {"mcp_exposed": [True, False]}}


def test_a_viewer_sees_the_choice_but_cannot_change_it_and_others_cannot_reach_it(
    world: World, workflow: Workflow, owner_client: Client, outsider_client: Client, client: Client
) -> None:
    owner_client.post(_url("workflow_settings", workflow), {**FORM, "mcp_exposed": "on"})
    user = make_user("viewer@alpha.test")
    Membership.objects.create(user=user, workspace=world.workspace_a, role=Role.VIEWER)
    viewer = logged_in(user)

    page = viewer.get(_url("workflow_detail", workflow)).content.decode()
    assert "Offered as an MCP tool" in page
    assert 'name="mcp_exposed"' not in page
    refused = viewer.post(_url("workflow_settings", workflow), FORM)
    outsider = outsider_client.post(_url("workflow_settings", workflow), FORM)
    anonymous = client.post(_url("workflow_settings", workflow), FORM)

    assert refused.status_code == 403
    assert outsider.status_code == 404
    assert anonymous.status_code == 302  # to sign in
    assert _exposed(world, workflow)
    assert not AuditEvent.objects.filter(
        action=services.WORKFLOW_UPDATED, metadata__changes__mcp_exposed=[True, False]
    ).exists()
