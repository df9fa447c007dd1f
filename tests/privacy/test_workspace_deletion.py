"""Deleting a workspace: closed at once for members and API keys, restorable by an owner or
staff during the grace period, then purged (schema dropped, files removed) by the periodic
task, which may run twice or die half-way without harm."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from accounts.models import User
from agents.models import Conversation
from agents.services import agent_create
from marketplace.models import Purchase
from privacy import services
from privacy.models import ExportJob
from tenants import services as tenant_services
from tenants.audit import Action
from tenants.models import AuditEvent, Membership, Role, Workspace
from tenants.permissions import Perm
from tenants.schemas import live_workspaces
from tests.helpers.money import make_purchase, make_shop
from tests.helpers.personas import World, access_of, logged_in, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def files(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PRIVACY_EXPORT_ROOT = tmp_path / "exports"
    return tmp_path


@pytest.fixture
def gamma(world: World, files: Path) -> Workspace:
    """A workspace of A's owner with A's member in it, an agent, a conversation, a file on disk
    and a built export."""
    workspace = tenant_services.workspace_create(user=world.owner, name="Gamma", slug="gamma")
    Membership.objects.create(user=world.member, workspace=workspace, role=Role.MEMBER)
    with schema_context(workspace.schema_name):
        agent = agent_create(
            access=access_of(world.owner, workspace), name="Helper", model="offline:demo"
        )
        Conversation.objects.create(agent=agent, title="Hello", created_by_id=world.member.pk)
    folder = services.workspace_files_dir(workspace)
    folder.mkdir(parents=True)
    (folder / "upload.txt").write_text("kept on disk")
    job = ExportJob.objects.create(
        kind=ExportJob.Kind.WORKSPACE, requested_by=world.owner, workspace=workspace
    )
    services.export_build(job_id=job.pk)
    return workspace


def _schema_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [name])
        return cursor.fetchone() is not None


def _delete(client: Client, slug: str, confirm: str) -> Any:
    return client.post(
        reverse("workspace_delete", kwargs={"workspace_slug": slug}), {"confirm": confirm}
    )


def _past_grace(workspace: Workspace) -> None:
    Workspace.objects.filter(pk=workspace.pk).update(
        purge_after=timezone.now() - timedelta(minutes=1)
    )
    # The test's rows were written in this same transaction, so their deferred foreign-key
    # checks are still pending and PostgreSQL refuses to drop their tables; a real purge runs
    # long after they were committed. Settle them now.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_a_deleted_workspace_is_closed_to_members_and_api_keys(
    world: World, gamma: Workspace, owner_client: Client, member_client: Client
) -> None:
    _, secret = tenant_services.api_key_create(
        access=access_of(world.owner, gamma), name="ci", scopes=[Perm.WORKSPACE_VIEW]
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.get("/api/v1/workspace/").status_code == 200

    response = _delete(owner_client, "gamma", "gamma")

    assert response.status_code == 302
    page = member_client.get("/w/gamma/agents/")
    assert page.status_code == 410
    text = page.content.decode()
    assert "Gamma is scheduled for deletion" in text
    assert "An owner of the workspace can restore it" in text
    assert "Restore Gamma" not in text
    assert "Restore Gamma" in owner_client.get("/w/gamma/").content.decode()
    refused = api.get("/api/v1/workspace/")
    assert refused.status_code == 401
    assert "scheduled for deletion" in refused.content.decode()
    session_api = owner_client.get("/api/v1/workspace/", HTTP_X_WORKSPACE="gamma")
    assert session_api.status_code == 410
    assert Client().post("/hooks/workflows/gamma/any-token/").status_code == 404
    event = AuditEvent.objects.get(action=Action.WORKSPACE_DELETION_REQUESTED)
    assert (event.actor, event.target_id) == (world.owner, str(gamma.pk))


def test_the_address_must_be_typed_to_delete(gamma: Workspace, owner_client: Client) -> None:
    response = _delete(owner_client, "gamma", "gama")
    assert response.status_code == 400
    assert "Type the workspace address, gamma, to confirm." in response.content.decode()
    gamma.refresh_from_db()
    assert gamma.deletion_requested_at is None


def test_the_owner_restores_it(world: World, gamma: Workspace, owner_client: Client) -> None:
    _delete(owner_client, "gamma", "gamma")
    restore = reverse("workspace_restore", kwargs={"slug": "gamma"})
    assert logged_in(world.member).post(restore).status_code == 404
    assert logged_in(world.outsider).post(restore).status_code == 404
    assert Client().post(restore).status_code == 302  # to sign in

    assert owner_client.post(restore).status_code == 302

    assert logged_in(world.member).get("/w/gamma/").status_code == 200
    assert AuditEvent.objects.filter(action=Action.WORKSPACE_RESTORED).count() == 1


def test_after_the_grace_the_schema_and_files_are_gone(
    world: World, gamma: Workspace, owner_client: Client
) -> None:
    schema = gamma.schema_name
    archive = services.export_path(ExportJob.objects.get(workspace=gamma))
    assert archive is not None
    assert archive.exists()
    _delete(owner_client, "gamma", "gamma")
    assert services.workspaces_purge_due() == []  # still in its grace period
    assert _schema_exists(schema)

    _past_grace(gamma)
    assert services.workspaces_purge_due() == [gamma.pk]

    assert not _schema_exists(schema)
    assert not Workspace.objects.filter(pk=gamma.pk).exists()
    assert not services.workspace_files_dir(gamma).exists()
    assert not archive.exists()
    assert not Membership.objects.filter(workspace_id=gamma.pk).exists()
    purged = AuditEvent.objects.get(action=Action.WORKSPACE_PURGED)
    assert purged.metadata["slug"] == "gamma"
    # The trail of the deletion outlives the workspace (recorded outside it).
    assert AuditEvent.objects.filter(action=Action.WORKSPACE_DELETION_REQUESTED).exists()
    # Twice: nothing left to do, nothing fails.
    assert services.workspaces_purge_due() == []
    assert logged_in(world.member).get("/w/gamma/").status_code == 404


def test_a_purge_that_died_half_way_finishes(gamma: Workspace, owner_client: Client) -> None:
    _delete(owner_client, "gamma", "gamma")
    _past_grace(gamma)
    # The last run removed the files and the schema, then its worker died.
    services.workspace_files_dir(gamma).joinpath("upload.txt").unlink()
    with connection.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA "{gamma.schema_name}" CASCADE')

    assert services.workspaces_purge_due() == [gamma.pk]
    assert not Workspace.objects.filter(pk=gamma.pk).exists()


def test_a_workspace_with_purchases_keeps_an_anonymous_row(
    world: World, gamma: Workspace, owner_client: Client
) -> None:
    shop = make_shop(workspace=world.workspace_b)
    purchase = make_purchase(shop, buyer=gamma)
    _delete(owner_client, "gamma", "gamma")
    _past_grace(gamma)

    assert services.workspaces_purge_due() == [gamma.pk]

    gamma.refresh_from_db()
    assert gamma.purged_at is not None
    assert gamma.name == f"Deleted workspace #{gamma.pk}"
    assert not _schema_exists(gamma.schema_name)
    assert not gamma.memberships.exists()
    assert Purchase.objects.get(pk=purchase.pk).unit_amount_cents == 2500
    assert gamma not in live_workspaces()
    assert logged_in(world.owner).get("/w/gamma/").status_code == 404
    assert AuditEvent.objects.get(action=Action.WORKSPACE_PURGED).metadata[
        "row_kept_for_financial_records"
    ]
    assert services.workspaces_purge_due() == []  # and again: nothing to do


def test_staff_export_delete_and_restore_from_the_admin(world: World, gamma: Workspace) -> None:
    staff = User.objects.create_superuser(email="ops@platform.test", password="x")
    admin = logged_in(staff)
    changelist = reverse("admin:tenants_workspace_changelist")

    def act(action: str) -> Any:
        return admin.post(changelist, {"action": action, "_selected_action": [gamma.pk]})

    assert act("export_workspaces").status_code == 302
    job = ExportJob.objects.filter(workspace=gamma, requested_by=staff).get()
    services.export_build(job_id=job.pk)
    assert admin.get(reverse("export_download", kwargs={"export_id": job.pk})).status_code == 200

    assert act("delete_workspaces").status_code == 302
    gamma.refresh_from_db()
    assert gamma.deletion_requested_at is not None
    assert admin.get(changelist).status_code == 200
    page = admin.get(reverse("admin:tenants_workspace_change", args=[gamma.pk]))
    assert page.status_code == 200

    assert act("restore_workspaces").status_code == 302
    gamma.refresh_from_db()
    assert gamma.deletion_requested_at is None
    actions = set(AuditEvent.objects.filter(actor=staff).values_list("action", flat=True))
    assert {
        Action.WORKSPACE_EXPORT_REQUESTED,
        Action.WORKSPACE_DELETION_REQUESTED,
        Action.WORKSPACE_RESTORED,
    } <= actions


def test_staff_purge_now_skips_the_grace(world: World, gamma: Workspace) -> None:
    staff = User.objects.create_superuser(email="ops@platform.test", password="x")
    services.workspace_deletion_request(staff=staff, workspace=gamma, confirm="gamma")
    assert services.workspace_purge(workspace_id=gamma.pk) is False  # grace not over
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # as in _past_grace
    assert services.workspace_purge(workspace_id=gamma.pk, force=True) is True
    assert not _schema_exists(gamma.schema_name)


def test_a_member_who_is_not_owner_cannot_delete(
    world: World, gamma: Workspace, member_client: Client
) -> None:
    assert _delete(member_client, "gamma", "gamma").status_code == 403
    viewer = make_user("viewer@gamma.test")
    Membership.objects.create(user=viewer, workspace=gamma, role=Role.VIEWER)
    assert _delete(logged_in(viewer), "gamma", "gamma").status_code == 403
    assert _delete(logged_in(world.outsider), "gamma", "gamma").status_code == 404
    gamma.refresh_from_db()
    assert gamma.deletion_requested_at is None


def test_schedules_of_a_deleted_workspace_do_not_fire(world: World, gamma: Workspace) -> None:
    from workflows import triggers
    from workflows.models import WorkflowRun
    from workflows.periodic import fire_schedules
    from workflows.services import workflow_create

    access = access_of(world.owner, gamma)
    with schema_context(gamma.schema_name):
        workflow = workflow_create(
            access=access,
            name="Nightly",
            definition={
                "schema_version": 1,
                "steps": [{"id": "a", "type": "transform", "config": {"value": "ok"}}],
                "edges": [],
            },
        )
        schedule = triggers.schedule_save(access=access, workflow=workflow, cron="* * * * *")
        type(schedule).objects.filter(pk=schedule.pk).update(
            next_run_at=timezone.now() - timedelta(minutes=1)
        )
    services.workspace_deletion_request(access=access, confirm="gamma")

    fire_schedules()

    with schema_context(gamma.schema_name):
        assert not WorkflowRun.objects.exists()
    services.workspace_restore(workspace=gamma, by=world.owner)
    fire_schedules()
    with schema_context(gamma.schema_name):
        assert WorkflowRun.objects.count() == 1
