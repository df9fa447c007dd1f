"""Export archives: what they hold (and never hold: secrets), who may download them, how long,
and the page that follows the build without a reload."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import (
    AgentRun,
    Conversation,
    ConversationTurn,
    KnowledgeBase,
    KnowledgeDocument,
    ProviderCredential,
)
from agents.services import agent_create
from notifications.kinds import Kind
from notifications.services import Event, notify
from privacy import services
from privacy.models import ExportJob
from tenants import services as tenant_services
from tenants.audit import Action
from tenants.models import AuditEvent, Membership, Role
from tenants.permissions import Perm
from tests.helpers.personas import World, access_of, logged_in, make_user

pytestmark = pytest.mark.django_db

PROVIDER_SECRET = "sk-ant-never-exported-0001"


@pytest.fixture(autouse=True)
def exports_dir(settings: Any, tmp_path: Path) -> Path:
    settings.PRIVACY_EXPORT_ROOT = tmp_path / "exports"
    return tmp_path


def _archive(job: ExportJob) -> zipfile.ZipFile:
    job.refresh_from_db()
    path = services.export_path(job)
    assert path is not None
    return zipfile.ZipFile(path)


def _lines(archive: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in archive.read(name).decode().splitlines()]


def _seed_alpha(world: World) -> str:
    """Workspace A with the member's work in it; returns the API key secret the owner made."""
    owner, member = (
        access_of(world.owner, world.workspace_a),
        access_of(world.member, world.workspace_a),
    )
    _, key_secret = tenant_services.api_key_create(access=owner, name="CI", scopes=[Perm.RUN])
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(access=owner, name="Support bot", model="offline:demo")
        version = agent.current_version
        assert version is not None
        AgentRun.objects.create(
            agent=agent, version=version, input="member's question", created_by_id=world.member.pk
        )
        chat = Conversation.objects.create(
            agent=agent, title="Member chat", created_by_id=member.actor_id
        )
        ConversationTurn.objects.create(
            conversation=chat, version=version, question="hi there", answer="hello"
        )
        base = KnowledgeBase.objects.create(name="Handbook")
        KnowledgeDocument.objects.create(
            knowledge_base=base,
            filename="../policy.txt",
            content_type="text/plain",
            size_bytes=11,
            sha256="2" * 64,
            content=b"be helpful.",
        )
        credential = ProviderCredential(name="Anthropic", kind="anthropic")
        credential.set_api_key(PROVIDER_SECRET)
        credential.save()
    return key_secret


def test_an_account_archive_covers_every_workspace_they_belong_to(world: World) -> None:
    _seed_alpha(world)
    Membership.objects.create(user=world.member, workspace=world.workspace_b, role=Role.VIEWER)
    job = services.account_export_request(user=world.member)
    services.export_build(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.progress) == (ExportJob.Status.READY, 100)

    archive = _archive(job)
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["workspaces"] == ["alpha", "bravo"]
    profile = json.loads(archive.read("account/profile.json"))
    assert profile["email"] == "member@alpha.test"
    assert "password" not in profile
    memberships = _lines(archive, "account/memberships.jsonl")
    assert {m["workspace_id"] for m in memberships} == {
        world.workspace_a.pk,
        world.workspace_b.pk,
    }
    assert _lines(archive, "workspaces/alpha/agent_runs.jsonl")[0]["input"] == "member's question"
    assert _lines(archive, "workspaces/alpha/messages.jsonl")[0]["question"] == "hi there"
    assert _lines(archive, "workspaces/bravo/messages.jsonl") == []
    assert _lines(archive, "account/audit_entries.jsonl") is not None


def test_api_keys_are_exported_as_metadata_never_secrets(world: World) -> None:
    secret = _seed_alpha(world)
    job = services.account_export_request(user=world.owner)
    services.export_build(job_id=job.pk)
    archive = _archive(job)
    keys = _lines(archive, "account/api_keys.jsonl")
    assert [k["name"] for k in keys] == ["CI"]
    assert "key_hash" not in keys[0]
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert secret.encode() not in everything
    assert secret.split("_")[-1].encode() not in everything


def test_notifications_sso_identities_and_two_factor_are_exported_without_secrets(
    world: World,
) -> None:
    notify(
        user_ids=[world.member.pk],
        event=Event(kind=Kind.RUN_FAILED, dedupe_key="export", title="Run 7 failed", url="/"),
    )
    SocialAccount.objects.create(
        user=world.member, provider="workspace-1", uid="idp-subject-9", extra_data={"sub": "9"}
    )
    Authenticator.objects.create(
        user=world.member, type=Authenticator.Type.TOTP, data={"secret": "TOTPSECRETVALUE"}
    )
    job = services.account_export_request(user=world.member)
    services.export_build(job_id=job.pk)
    archive = _archive(job)

    assert [n["title"] for n in _lines(archive, "account/notifications.jsonl")] == ["Run 7 failed"]
    assert [i["uid"] for i in _lines(archive, "account/sso_identities.jsonl")] == ["idp-subject-9"]
    (method,) = _lines(archive, "account/two_factor.jsonl")
    assert method["type"] == "totp"
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"TOTPSECRETVALUE" not in everything


def test_a_workspace_archive_holds_definitions_runs_chats_files_usage_members(
    world: World,
) -> None:
    _seed_alpha(world)
    job = services.workspace_export_request(access=access_of(world.owner, world.workspace_a))
    services.export_build(job_id=job.pk)
    archive = _archive(job)
    names = set(archive.namelist())

    assert [a["name"] for a in _lines(archive, "definitions/agents.jsonl")] == ["Support bot"]
    assert len(_lines(archive, "runs/agent_runs.jsonl")) == 1
    assert _lines(archive, "conversations/messages.jsonl")[0]["answer"] == "hello"
    assert "usage/ledger.jsonl" in names
    members = _lines(archive, "members.jsonl")
    assert {(m["email"], m["role"]) for m in members} == {
        ("owner@alpha.test", "owner"),
        ("member@alpha.test", "member"),
    }
    files = [n for n in names if n.startswith("knowledge/files/")]
    assert len(files) == 1
    assert "../" not in files[0]  # the stored name cannot climb out of its folder
    assert files[0].count("/") == 3
    assert archive.read(files[0]) == b"be helpful."
    everything = b"".join(archive.read(name) for name in names)
    assert PROVIDER_SECRET.encode() not in everything
    assert b"api_key_encrypted" not in everything
    assert AuditEvent.objects.filter(action=Action.WORKSPACE_EXPORT_REQUESTED).exists()


def test_a_job_is_built_once_even_if_delivered_twice(world: World) -> None:
    job = services.account_export_request(user=world.member)
    services.export_build(job_id=job.pk)
    first = ExportJob.objects.get(pk=job.pk).file_name
    services.export_build(job_id=job.pk)
    assert ExportJob.objects.get(pk=job.pk).file_name == first
    # A second request while one is being built is the same request.
    again = services.account_export_request(user=world.owner)
    assert services.account_export_request(user=world.owner) == again


def test_only_the_requester_downloads_and_only_until_it_expires(
    world: World, member_client: Client, owner_client: Client
) -> None:
    job = services.account_export_request(user=world.member)
    download = reverse("export_download", kwargs={"export_id": job.pk})
    assert member_client.get(download).status_code == 409  # not built yet
    services.export_build(job_id=job.pk)

    response = member_client.get(download)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"]
    zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert owner_client.get(download).status_code == 404
    assert logged_in(world.outsider).get(download).status_code == 404
    assert Client().get(download).status_code == 302
    assert AuditEvent.objects.filter(action=Action.ACCOUNT_EXPORT_DOWNLOADED).count() == 1

    ExportJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    path = services.export_path(ExportJob.objects.get(pk=job.pk))
    assert services.exports_expire() == 1
    assert path is not None
    assert not path.exists()
    assert member_client.get(download).status_code == 409


def test_the_page_polls_while_building_then_offers_the_download(
    world: World, member_client: Client
) -> None:
    response = member_client.post(reverse("account_export"))
    assert response.status_code == 302
    job = ExportJob.objects.get(requested_by=world.member)
    status = reverse("export_status", kwargs={"export_id": job.pk})
    page = member_client.get(reverse("account_privacy")).content.decode()
    assert f'hx-get="{status}"' in page
    assert 'hx-trigger="every 2s"' in page

    services.export_build(job_id=job.pk)
    partial = member_client.get(status, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in partial
    assert reverse("export_download", kwargs={"export_id": job.pk}) in partial
    assert logged_in(world.outsider).get(status).status_code == 404


def test_a_failed_build_says_so(world: World, member_client: Client, settings: Any) -> None:
    job = services.account_export_request(user=world.member)
    settings.PRIVACY_EXPORT_ROOT = "/proc/not-writable"
    with pytest.raises(OSError, match="not-writable"):
        services.export_build(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ExportJob.Status.FAILED
    status = reverse("export_status", kwargs={"export_id": job.pk})
    assert "Failed" in member_client.get(status).content.decode()


def test_pages_need_the_right_person(
    world: World, owner_client: Client, member_client: Client, outsider_client: Client
) -> None:
    data = reverse("workspace_data", kwargs={"workspace_slug": "alpha"})
    export = reverse("workspace_export", kwargs={"workspace_slug": "alpha"})
    assert Client().get(reverse("account_privacy")).status_code == 302
    assert Client().get(data).status_code == 302
    assert outsider_client.get(data).status_code == 404
    assert outsider_client.post(export).status_code == 404
    assert member_client.get(data).status_code == 403
    assert member_client.post(export).status_code == 403
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    assert logged_in(viewer).get(data).status_code == 403
    assert not ExportJob.objects.exists()

    page = owner_client.get(data)
    assert page.status_code == 200
    assert "Export workspace" in page.content.decode()
    assert owner_client.post(export).status_code == 302
    assert ExportJob.objects.filter(workspace=world.workspace_a).count() == 1
    settings_page = owner_client.get(
        reverse("workspace_settings", kwargs={"workspace_slug": "alpha"})
    ).content.decode()
    assert data in settings_page
    assert owner_client.get(reverse("account_privacy")).status_code == 200
