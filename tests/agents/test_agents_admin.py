"""Workspace data in the back-office: staff choose a workspace and then see only its agents,
runs, ledger...; the page always names the workspace; a form rendered for one workspace
changes nothing after the choice moved to another (another tab); read-only stays read-only;
document contents are never rendered; people who are not staff cannot get in."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from accounts.models import User
from agents import services
from agents.models import (
    AgentRun,
    AllowedHost,
    CachedResponse,
    KnowledgeBase,
    KnowledgeDocument,
    UsageRecord,
)
from agents.outbound.services import HOST_ADDED
from agents.runs.executor import execute_run
from tenants.models import AuditEvent, Workspace
from tests.helpers.personas import World, access_of, logged_in

pytestmark = pytest.mark.django_db

TENANT_CHANGELISTS = [
    "agent",
    "agentrun",
    "conversation",
    "knowledgebase",
    "knowledgedocument",
    "cachedresponse",
    "allowedhost",
    "usagerecord",
    "webhookdelivery",
]


def _admin(model: str, view: str = "changelist", *args: Any) -> str:
    return reverse(f"admin:agents_{model}_{view}", args=args)


@pytest.fixture
def staff_client(world: World) -> Client:
    return logged_in(User.objects.create_superuser(email="staff@platform.test", password="x"))


@pytest.fixture
def agents_in_both(world: World) -> dict[str, int]:
    """An agent with one run in each workspace; returns the agent ids by slug."""
    ids = {}
    for workspace, owner, name in (
        (world.workspace_a, world.owner, "Alpha helper"),
        (world.workspace_b, world.outsider, "Bravo helper"),
    ):
        with schema_context(workspace.schema_name):
            access = access_of(owner, workspace)
            agent = services.agent_create(access=access, name=name, model="offline:demo")
            run = services.agent_run_start(access=access, agent_id=agent.pk, input="hello")
            execute_run(run.pk)
            ids[workspace.slug] = agent.pk
    return ids


def _choose(client: Client, workspace: Workspace, model: str = "agent", next_url: str = "") -> Any:
    return client.post(
        _admin(model, "workspace"), {"workspace": workspace.pk, "next": next_url}, follow=True
    )


def _cached_answer(workspace: Workspace, answer: str) -> int:
    with schema_context(workspace.schema_name):
        entry = CachedResponse.objects.create(
            model="offline:demo",
            prompt="user: q",
            question="q",
            key_sha256="0" * 64,
            context_sha256="1" * 64,
            embedder="hashing-v2",
            embedding=[0.1] * 384,
            answer=answer,
        )
        return entry.pk


def test_without_a_chosen_workspace_staff_are_sent_to_the_chooser(
    world: World, staff_client: Client
) -> None:
    response = staff_client.get(_admin("agent"))
    assert response.status_code == 302
    assert response["Location"].startswith(_admin("agent", "workspace") + "?next=")
    chooser = staff_client.get(response["Location"]).content.decode()
    assert "Alpha Inc" in chooser
    assert "Bravo Ltd" in chooser
    assert "ws_template" not in chooser  # the template schema is not a workspace
    found = staff_client.get(_admin("agent", "workspace"), {"q": "brav"}).content.decode()
    assert "Bravo Ltd" in found
    assert "Alpha Inc" not in found


def test_staff_see_only_the_chosen_workspaces_agents(
    world: World, staff_client: Client, agents_in_both: dict[str, int]
) -> None:
    page = _choose(staff_client, world.workspace_a, next_url=_admin("agent")).content.decode()
    assert "Alpha helper" in page
    assert "Bravo helper" not in page
    assert "Workspace: <strong>Alpha Inc</strong>" in page

    page = _choose(staff_client, world.workspace_b).content.decode()  # lands on the list
    assert "Bravo helper" in page
    assert "Alpha helper" not in page
    assert "Workspace: <strong>Bravo Ltd</strong>" in page

    runs = staff_client.get(_admin("agentrun")).content.decode()
    assert "Bravo helper" in runs
    assert "Alpha helper" not in runs


def test_every_workspace_list_renders_in_the_chosen_workspace(
    world: World, staff_client: Client, agents_in_both: dict[str, int]
) -> None:
    _choose(staff_client, world.workspace_a)
    for model in TENANT_CHANGELISTS:
        response = staff_client.get(_admin(model), {"q": "a"})
        assert response.status_code == 200, model
        assert "Workspace: <strong>Alpha Inc</strong>" in response.content.decode(), model
    with schema_context(world.workspace_a.schema_name):
        ledger_rows = UsageRecord.objects.count()
    usage = staff_client.get(_admin("usagerecord"))
    assert usage.context["cl"].result_count == ledger_rows > 0


def test_agent_page_is_read_only_with_its_versions(
    world: World, staff_client: Client, agents_in_both: dict[str, int]
) -> None:
    _choose(staff_client, world.workspace_a)
    agent_id = agents_in_both["alpha"]
    page = staff_client.get(_admin("agent", "change", agent_id))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Alpha helper" in html
    assert "offline:demo" in html  # the version inline
    assert 'name="_save"' not in html
    assert "History" not in html
    here = {"_workspace": world.workspace_a.schema_name}
    change = staff_client.post(_admin("agent", "change", agent_id), {**here, "name": "x"})
    assert change.status_code == 403
    assert staff_client.get(_admin("agent", "add")).status_code == 403
    with schema_context(world.workspace_a.schema_name):
        run_id = AgentRun.objects.get().pk
    delete = staff_client.post(_admin("agentrun", "delete", run_id), {**here, "post": "yes"})
    assert delete.status_code == 403
    with schema_context(world.workspace_a.schema_name):
        assert AgentRun.objects.filter(pk=run_id).exists()


def test_document_contents_are_never_rendered(world: World, staff_client: Client) -> None:
    with schema_context(world.workspace_a.schema_name):
        base = KnowledgeBase.objects.create(name="Handbook")
        document = KnowledgeDocument.objects.create(
            knowledge_base=base,
            filename="salaries.txt",
            content_type="text/plain",
            size_bytes=16,
            sha256="1" * 64,
            content=b"SECRET-SALARIES",
            status=KnowledgeDocument.Status.READY,
        )
    _choose(staff_client, world.workspace_a)
    for url in (
        _admin("knowledgedocument"),
        _admin("knowledgedocument", "change", document.pk),
        _admin("knowledgebase", "change", base.pk),
    ):
        html = staff_client.get(url).content.decode()
        assert "salaries.txt" in html, url
        assert "SECRET-SALARIES" not in html, url


def test_cached_answers_can_be_deleted_in_the_chosen_workspace_only(
    world: World, staff_client: Client
) -> None:
    alpha_entry = _cached_answer(world.workspace_a, "alpha answer")
    _choose(staff_client, world.workspace_a)
    confirm = staff_client.get(_admin("cachedresponse", "delete", alpha_entry)).content.decode()
    assert "Workspace: <strong>Alpha Inc</strong>" in confirm
    assert f'name="_workspace" value="{world.workspace_a.schema_name}"' in confirm

    response = staff_client.post(
        _admin("cachedresponse", "delete", alpha_entry),
        {"post": "yes", "_workspace": world.workspace_a.schema_name},
    )
    assert response.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        assert not CachedResponse.objects.filter(pk=alpha_entry).exists()
    entry = LogEntry.objects.latest("action_time")
    assert entry.object_repr.endswith("· workspace alpha")


def test_a_form_from_another_tab_changes_nothing_after_the_workspace_changed(
    world: World, staff_client: Client
) -> None:
    alpha_entry = _cached_answer(world.workspace_a, "alpha answer")
    bravo_entry = _cached_answer(world.workspace_b, "bravo answer")
    _choose(staff_client, world.workspace_a, model="cachedresponse")
    # Tab 1 shows Alpha's delete page; tab 2 switches the back-office to Bravo.
    staff_client.get(_admin("cachedresponse", "delete", alpha_entry))
    _choose(staff_client, world.workspace_b, model="cachedresponse")
    # Tab 1's form is submitted: it was for Alpha, so nothing happens in either workspace.
    for entry_id in {alpha_entry, bravo_entry}:
        response = staff_client.post(
            _admin("cachedresponse", "delete", entry_id),
            {"post": "yes", "_workspace": world.workspace_a.schema_name},
            follow=True,
        )
        assert "Nothing was changed" in response.content.decode()
    # A bulk action form without the field is refused the same way.
    staff_client.post(
        _admin("cachedresponse"),
        {"action": "delete_selected", "_selected_action": [bravo_entry], "post": "yes"},
    )
    with schema_context(world.workspace_a.schema_name):
        assert CachedResponse.objects.filter(pk=alpha_entry).exists()
    with schema_context(world.workspace_b.schema_name):
        assert CachedResponse.objects.filter(pk=bravo_entry).exists()


def test_bulk_delete_of_cached_answers_works_with_the_workspace_field(
    world: World, staff_client: Client
) -> None:
    entry = _cached_answer(world.workspace_b, "bravo answer")
    _choose(staff_client, world.workspace_b, model="cachedresponse")
    form = {
        "action": "delete_selected",
        "_selected_action": [entry],
        "_workspace": world.workspace_b.schema_name,
    }
    confirm = staff_client.post(_admin("cachedresponse"), form).content.decode()
    assert "Are you sure" in confirm
    assert "Workspace: <strong>Bravo Ltd</strong>" in confirm
    staff_client.post(_admin("cachedresponse"), {**form, "post": "yes"})
    with schema_context(world.workspace_b.schema_name):
        assert not CachedResponse.objects.filter(pk=entry).exists()


def test_staff_add_allowed_hosts_with_the_same_validation_and_an_audit_event(
    world: World, staff_client: Client
) -> None:
    _choose(staff_client, world.workspace_b, model="allowedhost")
    bad = staff_client.post(
        _admin("allowedhost", "add"),
        {"host": "http://169.254.169.254/", "_workspace": world.workspace_b.schema_name},
    )
    assert bad.status_code == 200
    assert "no http://" in str(bad.context["adminform"].form.errors)
    good = staff_client.post(
        _admin("allowedhost", "add"),
        {"host": "API.Example.com", "_workspace": world.workspace_b.schema_name},
    )
    assert good.status_code == 302
    with schema_context(world.workspace_b.schema_name):
        assert list(AllowedHost.objects.values_list("host", flat=True)) == ["api.example.com"]
    with schema_context(world.workspace_a.schema_name):
        assert not AllowedHost.objects.exists()
    event = AuditEvent.objects.filter(action=HOST_ADDED).get()
    assert (event.workspace, event.actor_label, event.metadata) == (
        world.workspace_b,
        "staff@platform.test",
        {"via": "admin"},
    )


def test_people_who_are_not_staff_cannot_get_in(
    world: World, owner_client: Client, agents_in_both: dict[str, int]
) -> None:
    for url in (_admin("agent"), _admin("agent", "workspace"), _admin("usagerecord")):
        response = owner_client.get(url)
        assert response.status_code == 302, url
        assert "/admin/login/" in response["Location"], url
    response = owner_client.post(_admin("agent", "workspace"), {"workspace": world.workspace_a.pk})
    assert "/admin/login/" in response["Location"]


def test_staff_without_the_view_permission_get_nothing(
    world: World, agents_in_both: dict[str, int]
) -> None:
    client = logged_in(User.objects.create_user(email="ops@platform.test", is_staff=True))
    assert client.get(_admin("agent", "workspace"))["Location"] == reverse("admin:index")
    client.post(_admin("agent", "workspace"), {"workspace": world.workspace_a.pk})
    assert client.get(_admin("agent")).status_code == 302  # still no workspace chosen
    session = client.session
    session["admin_workspace_id"] = world.workspace_a.pk
    session.save()
    assert client.get(_admin("agent")).status_code == 403


def test_the_query_runs_against_the_chosen_schema_even_with_equal_ids(
    world: World, staff_client: Client
) -> None:
    """Ids repeat across schemas; the same URL shows each workspace's own row."""
    with schema_context(world.workspace_a.schema_name):
        a = UsageRecord.objects.create(kind="offline", model="alpha-model", outcome="ok")
    with schema_context(world.workspace_b.schema_name):
        b = UsageRecord.objects.create(
            kind="offline", model="bravo-model", outcome="ok", cost_usd=Decimal("0.5")
        )
    _choose(staff_client, world.workspace_a, model="usagerecord")
    assert "alpha-model" in staff_client.get(_admin("usagerecord", "change", a.pk)).content.decode()
    _choose(staff_client, world.workspace_b, model="usagerecord")
    html = staff_client.get(_admin("usagerecord", "change", b.pk)).content.decode()
    assert "bravo-model" in html
    assert "alpha-model" not in html


def test_the_admin_index_links_to_workspace_data(staff_client: Client) -> None:
    html = staff_client.get(reverse("admin:index")).content.decode()
    assert f'href="{_admin("agent")}"' in html
    assert f'href="{_admin("usagerecord")}"' in html
    assert "Not available for global schema" not in html
    assert f'href="{_admin("agent")}"' in staff_client.get("/admin/agents/").content.decode()
