"""Allowances that cap what a workspace keeps: active workflows and knowledge storage. Past the
plan's figure a creation or upload is refused before anything is stored, with a message that
names the limit and how to raise it (402 in the API)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context

from agents.knowledge import services as knowledge
from agents.models import KnowledgeDocument
from billing.models import Plan
from billing.plans import default_plan
from billing.quotas import QuotaExceeded
from tenants import services as tenant_services
from tenants.models import Invitation
from tenants.permissions import Perm
from tests.helpers.personas import World, access_of, key_client, logged_in
from tests.helpers.workflows import flow, transform
from workflows import services as workflow_services
from workflows.models import Workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_plan(settings: Any, world: World) -> Plan:
    settings.BILLING_QUOTAS = True
    plan = default_plan()
    Plan.objects.filter(pk=plan.pk).update(workflows=1, knowledge_storage_mb=1)
    return plan


def _create(access: Any, name: str) -> Workflow:
    return workflow_services.workflow_create(
        access=access, name=name, definition=flow([transform("a", "x")], [])
    )


def test_a_workflow_past_the_plans_number_is_refused_and_archived_ones_do_not_count(
    world: World, small_plan: Plan
) -> None:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        first = _create(access, "One")
        with pytest.raises(QuotaExceeded) as refused:
            _create(access, "Two")
        assert Workflow.objects.count() == 1
        workflow_services.workflow_archive(access=access, workflow=first)
        _create(access, "Two")  # an archived workflow frees its place
        with pytest.raises(QuotaExceeded):  # restoring it would make two active workflows
            workflow_services.workflow_restore(access=access, workflow=first)
        first.refresh_from_db()
        assert first.archived_at is not None
    assert "1 workflows, the most its Free plan allows" in refused.value.message
    assert "upgrade the plan" in refused.value.message


def test_the_workflow_api_answers_402(world: World, small_plan: Plan) -> None:
    client = key_client(world, [Perm.BUILD, Perm.RUN, Perm.WORKSPACE_VIEW])
    body = {"name": "One", "definition": flow([transform("a", "x")], [])}
    assert client.post("/api/v1/workflows/", body, format="json").status_code == 201
    refused = client.post("/api/v1/workflows/", {**body, "name": "Two"}, format="json")
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "quota_exceeded"


def test_an_upload_past_the_plans_storage_is_refused_and_nothing_is_stored(
    world: World, small_plan: Plan
) -> None:
    access = access_of(world.owner, world.workspace_a)
    part = b"word " * 130_000  # 650,000 bytes: one fits in 1 MB, two do not
    with schema_context(world.workspace_a.schema_name):
        base = knowledge.knowledge_base_create(access=access, name="Handbook")
        knowledge.document_upload(
            access=access, knowledge_base_id=base.pk, file=SimpleUploadedFile("one.txt", part)
        )
        with pytest.raises(QuotaExceeded) as refused:
            knowledge.document_upload(
                access=access,
                knowledge_base_id=base.pk,
                file=SimpleUploadedFile("two.txt", part + b"!"),
            )
        assert list(KnowledgeDocument.objects.values_list("filename", flat=True)) == ["one.txt"]
    message = refused.value.message
    assert "“two.txt” (0.6 MB)" in message
    assert "to 1.2 MB" in message
    assert "allows 1 MB" in message


def test_with_quotas_off_allowances_are_not_enforced(world: World, settings: Any) -> None:
    settings.BILLING_QUOTAS = False
    Plan.objects.filter(pk=default_plan().pk).update(workflows=0)
    with schema_context(world.workspace_a.schema_name):
        _create(access_of(world.owner, world.workspace_a), "One")


def test_an_invitation_past_the_plans_seats_is_refused(world: World, small_plan: Plan) -> None:
    """Alpha has two members; with three seats one invitation fits, the next is refused in
    the service, the members page and the API alike."""
    Plan.objects.filter(pk=small_plan.pk).update(seats=3)
    access = access_of(world.owner, world.workspace_a)
    tenant_services.invitation_create(access=access, email="third@alpha.test", role="member")
    with pytest.raises(QuotaExceeded) as refused:
        tenant_services.invitation_create(access=access, email="fourth@alpha.test", role="member")
    assert "2 members and 1 pending invitations" in refused.value.message
    assert "3 seats" in refused.value.message
    assert Invitation.objects.filter(email="fourth@alpha.test").count() == 0

    page = logged_in(world.owner).post(
        "/w/alpha/members/invite/", {"email": "fifth@alpha.test", "role": "member"}
    )
    assert page.status_code == 400
    assert "3 seats" in page.content.decode()

    client = key_client(world, [Perm.MEMBERS_INVITE, Perm.MEMBERS_VIEW, Perm.WORKSPACE_VIEW])
    api = client.post(
        "/api/v1/invitations/", {"email": "sixth@alpha.test", "role": "viewer"}, format="json"
    )
    assert api.status_code == 402
    assert api.json()["error"]["code"] == "quota_exceeded"
