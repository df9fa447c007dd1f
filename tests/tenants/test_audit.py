"""The workspace audit log as its owner reads it: sign-ins under "Signed in", changes to
agents, provider keys, model aliases and knowledge bases, each named by its target."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from accounts.models import User
from agents import services as agent_services
from agents.gateway import aliases
from agents.gateway import credentials as provider_credentials
from agents.knowledge import services as knowledge
from marketplace import services as marketplace
from marketplace.models import Category, Listing
from tenants import audit
from tenants import services as tenant_services
from tenants.models import AuditEvent
from tests.helpers.personas import PASSWORD, World, access_of

pytestmark = pytest.mark.django_db


def _rows(client: Client, action: str = "", slug: str = "alpha") -> list[str]:
    """The audit table's rows as text ("Action · actor · target"), newest first."""
    url = reverse("audit_log", kwargs={"workspace_slug": slug})
    page = client.get(url, {"action": action} if action else {}).content.decode()
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in page else ""
    rows = []
    for row in body.split("</tr>")[:-1]:
        cells = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip() for c in row.split("<td")]
        rows.append(" | ".join(c.split(">", 1)[-1].strip() for c in cells[1:]))
    return rows


def test_a_members_sign_in_shows_under_signed_in(world: World, owner_client: Client) -> None:
    # when the member signs in through the login form
    response = Client().post(
        reverse("account_login"), {"login": world.member.email, "password": PASSWORD}
    )
    assert response.status_code == 302

    # then the owner sees it under the "Signed in" filter of alpha's log
    rows = _rows(owner_client, audit.Action.SIGN_IN)
    assert any("Signed in" in r and world.member.email in r for r in rows), rows
    # and a failed attempt on the member's address shows under "Failed sign-in"
    Client().post(reverse("account_login"), {"login": world.member.email, "password": "wrong"})
    failed = _rows(owner_client, audit.Action.SIGN_IN_FAILED)
    assert any(world.member.email in r for r in failed), failed


def test_a_sign_in_shows_only_in_the_workspaces_of_the_user(
    world: World, outsider_client: Client
) -> None:
    Client().post(reverse("account_login"), {"login": world.member.email, "password": PASSWORD})
    rows = _rows(outsider_client, audit.Action.SIGN_IN, slug="bravo")
    assert not any(world.member.email in r for r in rows), rows


def test_a_change_carries_the_callers_address_and_browser_read_from_the_request(
    world: World, owner_client: Client
) -> None:
    # when the owner renames the workspace from the settings page
    owner_client.post(
        reverse("workspace_settings", kwargs={"workspace_slug": "alpha"}),
        {"name": "Alpha Corp"},
        REMOTE_ADDR="198.51.100.4",
        HTTP_USER_AGENT="Example Browser/1.0",
    )

    # then the row names the caller's address, browser and request, though the service that
    # wrote it was never handed the request
    event = AuditEvent.objects.get(action=audit.Action.WORKSPACE_UPDATED)
    assert (event.ip_address, event.user_agent) == ("198.51.100.4", "Example Browser/1.0")
    assert event.request_id
    # and the same change outside a request (a task, a command) carries none
    tenant_services.workspace_update(access=access_of(world.owner, world.workspace_a), name="A")
    later = AuditEvent.objects.filter(action=audit.Action.WORKSPACE_UPDATED).exclude(pk=event.pk)
    assert [(e.ip_address, e.user_agent, e.request_id) for e in later] == [(None, "", "")]


def test_agent_provider_alias_and_knowledge_changes_are_audited_by_name(
    world: World, owner_client: Client
) -> None:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = agent_services.agent_create(
            access=access, name="Invoice checker", model="offline:demo"
        )
        agent_services.agent_update(access=access, agent_id=agent.pk, system_prompt="Be brief.")
        agent_services.agent_restore_version(access=access, agent_id=agent.pk, number=1)
        agent_services.agent_archive(access=access, agent_id=agent.pk)
        credential = provider_credentials.credential_create(
            access=access, name="Team Anthropic", kind="anthropic", api_key="sk-ant-secret-1"
        )
        provider_credentials.credential_delete(access=access, credential_id=credential.pk)
        alias = aliases.alias_save(
            access=access,
            name="smart",
            targets=[aliases.TargetSpec(kind="offline", model="demo", credential_id=None)],
        )
        aliases.alias_save(
            access=access,
            alias_id=alias.pk,
            name="smart",
            targets=[aliases.TargetSpec(kind="offline", model="other", credential_id=None)],
        )
        aliases.alias_delete(access=access, alias_id=alias.pk)
        base = knowledge.knowledge_base_create(access=access, name="Help center")
        document = knowledge.document_upload(
            access=access,
            knowledge_base_id=base.pk,
            file=SimpleUploadedFile("faq.txt", b"Refunds take five days.", "text/plain"),
        )
        knowledge.document_delete(access=access, knowledge_base_id=base.pk, document_id=document.pk)
        knowledge.knowledge_base_delete(access=access, knowledge_base_id=base.pk)

    rows = _rows(owner_client)
    expected = [
        ("Knowledge base deleted", "Help center"),
        ("Document deleted", "faq.txt in Help center"),
        ("Document added", "faq.txt in Help center"),
        ("Knowledge base created", "Help center"),
        ("Model alias deleted", "smart"),
        ("Model alias updated", "smart"),
        ("Model alias created", "smart"),
        ("Provider key removed", "Team Anthropic"),
        ("Provider key added", "Team Anthropic"),
        ("Agent archived", "Invoice checker"),
        ("Agent version restored", "Invoice checker"),
        ("Agent updated", "Invoice checker"),
        ("Agent created", "Invoice checker"),
    ]
    for (label, target), row in zip(expected, rows, strict=False):
        assert label in row, (label, row)
        assert target in row, (label, row)
        assert world.owner.email in row, (label, row)
    assert (
        "sk-ant-secret"
        not in owner_client.get(
            reverse("audit_log", kwargs={"workspace_slug": "alpha"})
        ).content.decode()
    )


def test_an_install_names_the_workspace_not_its_number(
    world: World, outsider_client: Client
) -> None:
    # given an approved listing of alpha's agent
    Category.objects.create(slug="support", name="Support")
    owner = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = agent_services.agent_create(access=owner, name="Helper", model="offline:demo")
    version = marketplace.listing_publish(
        access=owner,
        kind="agent",
        source_id=agent.pk,
        title="Helpful agent",
        summary="Answers briefly.",
        category_slug="support",
        tags=[],
    )
    staff = User.objects.create_superuser(email="mod@platform.test", password="x")
    marketplace.version_approve(user=staff, version=version)

    # when bravo installs it
    marketplace.install(
        access=access_of(world.outsider, world.workspace_b),
        listing=Listing.objects.get(pk=version.listing_id),
    )

    # then bravo's log names the listing and the workspace, never the workspace's id
    row = _rows(outsider_client, audit.Action.LISTING_INSTALLED, slug="bravo")[0]
    assert "Helpful agent in Bravo Ltd" in row, row
    assert f"in {world.workspace_b.pk}" not in row


def test_the_next_page_of_a_filtered_log_keeps_its_filter(
    world: World, owner_client: Client
) -> None:
    for number in range(60):
        audit.record(
            action=audit.Action.MEMBER_INVITED,
            actor=world.owner,
            workspace=world.workspace_a,
            target_label=f"person{number}@example.com",
        )
    url = reverse("audit_log", kwargs={"workspace_slug": "alpha"})

    first = owner_client.get(url, {"action": audit.Action.MEMBER_INVITED}).content.decode()
    older = re.search(r'<a class="btn btn--sm" rel="next" href="([^"]+)"', first)

    assert older is not None
    assert "Page 1 of 2" in first
    second = owner_client.get(url + older.group(1).replace("&amp;", "&")).content.decode()
    assert "Page 2 of 2" in second
    assert f"action={audit.Action.MEMBER_INVITED}" in older.group(1)
    assert len(_rows(owner_client, audit.Action.MEMBER_INVITED)) == 50
