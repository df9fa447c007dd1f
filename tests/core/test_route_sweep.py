"""Every route, requested the way an attacker would: the sweep enumerates the URL resolver (web
pages, the API, inbound hooks, allauth and the admin), fills each pattern with real ids of
workspace A, and requests it as

- anonymous,
- an outsider's session (the owner of workspace B),
- an outsider's API key (a key of B with every scope),
- and, for writes, A's viewer (a session and a viewer-scoped key of A).

Nothing of A may be revealed (A's private objects carry a marker that must appear in no
response), nothing of A may change (a digest of A's schema and A's public rows is compared
before and after), and nothing may answer 5xx. A route whose parameter has no fixture below
fails the sweep, so a new route cannot go unswept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django_tenants.utils import schema_context
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.models import User
from agents.embed.services import share_create
from agents.models import (
    AgentRun,
    AllowedHost,
    Conversation,
    ConversationTurn,
    KnowledgeBase,
    KnowledgeDocument,
    McpServerConnection,
    ModelAlias,
    ProviderCredential,
)
from agents.services import agent_create
from core.crypto import encrypt
from evals.models import Case, CaseResult, Dataset, Evaluation, Suite
from marketplace import services as market
from marketplace.models import Category, Listing, Purchase, Review
from notifications.kinds import Kind
from notifications.services import Event, notify
from privacy.models import ExportJob
from tenants import services as tenant_services
from tenants.models import EmailDomain, Membership, Role, WorkspaceSignIn
from tenants.permissions import API_KEY_SCOPES, Perm
from tests.helpers.personas import World, access_of, make_user
from workflows import engine, runs, triggers
from workflows.models import StepRun
from workflows.services import workflow_create

pytestmark = pytest.mark.django_db

MARKER = "zqxsecretalpha"  # in every private object of A; must appear in no response
SECRET = f"sk-{MARKER}-provider-key-0001"

FLOW: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"q": {"type": "string"}},
    "steps": [
        {"id": "a", "type": "transform", "name": "First", "config": {"value": "{{ input.q }}"}},
        {"id": "review", "type": "approval", "config": {"message": f"Ship {MARKER}?"}},
        {"id": "done", "type": "transform", "config": {"value": "ok"}},
    ],
    "edges": [
        {"from": "a", "to": "review"},
        {"from": "review", "to": "done", "branch": "approved"},
    ],
    "output": {"result": "{{ steps.done }}"},
}


@dataclass
class Ids:
    """Real objects of workspace A, by the name the sweep's parameter fixtures use."""

    values: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def _seed(world: World, viewer: User) -> Ids:
    """Workspace A with one of everything a route can point at; private ones carry MARKER."""
    a = world.workspace_a
    owner = access_of(world.owner, a)
    ids: dict[str, Any] = {"workspace_slug": a.slug}
    with schema_context(a.schema_name):
        agent = agent_create(
            access=owner,
            name=f"Agent {MARKER}",
            model="offline:demo",
            system_prompt=f"Never reveal {MARKER}.",
        )
        ids["agent_id"] = agent.pk
        version = agent.current_version
        assert version is not None
        ids["agent_version"] = version.number
        run = AgentRun.objects.create(agent=agent, version=version, input=f"question {MARKER}")
        ids["agent_run_id"] = run.pk
        workflow = workflow_create(
            access=owner, name=f"Flow {MARKER}", definition=FLOW, description=MARKER
        )
        ids["workflow_id"] = workflow.pk
        ids["workflow_version"] = workflow.versions.order_by("-number").first().number
        wf_run = runs.run_start(
            workflow=workflow,
            inputs={"q": MARKER},
            trigger="manual",
            access=owner,
        )
        for node_id in ("a", "review"):
            step = StepRun.objects.get(run_id=wf_run.pk, node_id=node_id, parent__isnull=True)
            engine.step_execute(step.pk)
        ids["workflow_run_id"] = wf_run.pk
        ids["approval_step_id"] = StepRun.objects.get(run_id=wf_run.pk, node_id="review").pk
        ids["first_step_id"] = StepRun.objects.get(run_id=wf_run.pk, node_id="a").pk
        trigger, _ = triggers.webhook_trigger_create(access=owner, workflow=workflow, name=MARKER)
        ids["trigger_id"] = trigger.pk
        ids["trigger_token"] = trigger.token
        base = KnowledgeBase.objects.create(name=f"KB {MARKER}")
        ids["knowledge_base_id"] = base.pk
        document = KnowledgeDocument.objects.create(
            knowledge_base=base,
            filename=f"{MARKER}.txt",
            content_type="text/plain",
            size_bytes=len(MARKER),
            sha256="1" * 64,
            content=MARKER.encode(),
            status=KnowledgeDocument.Status.READY,
        )
        ids["document_id"] = document.pk
        conversation = Conversation.objects.create(
            agent=agent, title=f"Chat {MARKER}", created_by_id=world.owner.pk
        )
        ids["conversation_id"] = conversation.pk
        turn = ConversationTurn.objects.create(
            conversation=conversation,
            version=version,
            question=f"Q {MARKER}",
            answer=f"A {MARKER}",
            status=ConversationTurn.Status.DONE,
        )
        ids["turn_id"] = turn.pk
        ids["host_id"] = AllowedHost.objects.create(host=f"{MARKER}.example.com").pk
        mcp = McpServerConnection(name="sweep", url=f"https://{MARKER}.example.com/mcp")
        mcp.set_credential(SECRET)
        mcp.save()
        ids["connection_id"] = mcp.pk
        credential = ProviderCredential(name=f"Key {MARKER}", kind="anthropic")
        credential.set_api_key(SECRET)
        credential.save()
        ids["credential_id"] = credential.pk
        ids["alias_id"] = ModelAlias.objects.create(name=f"alias-{MARKER}").pk
        dataset = Dataset.objects.create(name=f"Dataset {MARKER}")
        case = Case.objects.create(dataset=dataset, position=1, input=f"case {MARKER}")
        ids["dataset_id"] = dataset.pk
        suite = Suite.objects.create(
            name=f"Suite {MARKER}", dataset=dataset, evaluators=[{"kind": "exact"}]
        )
        evaluation = Evaluation.objects.create(
            suite=suite,
            agent_id=agent.pk,
            agent_version_id=version.pk,
            version_number=version.number,
            target_name=agent.name,
            cases_total=1,
        )
        CaseResult.objects.create(evaluation=evaluation, case=case, output=f"out {MARKER}")
        ids["evaluation_id"] = evaluation.pk
        published_agent = agent_create(
            access=owner, name="Public helper", model="offline:demo", system_prompt="Be brief."
        )
        shared = share_create(access=owner, agent_id=ids["agent_id"], title=f"Share {MARKER}")
        ids["share_id"] = shared.pk
        ids["share_key"] = shared.key
        visited = Conversation.objects.create(
            agent_id=ids["agent_id"], share=shared, end_user_id="anon-sweep", title=f"V {MARKER}"
        )
        ConversationTurn.objects.create(
            conversation=visited, version=version, question=f"Q {MARKER}", answer=f"A {MARKER}"
        )
        ids["share_conversation_id"] = visited.pk
    ids["membership_id"] = Membership.objects.get(user=viewer, workspace=a).pk
    invitation, token = tenant_services.invitation_create(
        access=owner, email=f"{MARKER}@example.com", role=Role.MEMBER
    )
    ids["invitation_id"] = invitation.pk
    ids["invitation_token"] = token
    key, _ = tenant_services.api_key_create(access=owner, name=f"Key {MARKER}", scopes=[Perm.RUN])
    ids["api_key_id"] = key.pk
    ids["export_id"] = ExportJob.objects.create(
        kind=ExportJob.Kind.WORKSPACE, requested_by=world.owner, workspace=a, stage=MARKER
    ).pk
    ids["domain_id"] = EmailDomain.objects.create(
        workspace=a, domain=f"{MARKER}.example.com", token=MARKER
    ).pk
    WorkspaceSignIn.objects.create(
        workspace=a,
        display_name=f"SSO {MARKER}",
        oidc_server_url=f"https://{MARKER}.invalid",
        oidc_client_id=f"client-{MARKER}",
        oidc_client_secret_encrypted=encrypt(f"secret-{MARKER}"),
    )
    ids["provider_id"] = f"workspace-{a.pk}"
    (notice,) = notify(
        user_ids=[world.owner.pk],
        event=Event(
            kind=Kind.RUN_FAILED,
            dedupe_key="sweep",
            title=f"Run {MARKER} failed",
            url=f"/w/{a.slug}/workflows/runs/{wf_run.pk}/",
            workspace_id=a.pk,
        ),
    )
    ids["notification_id"] = notice.pk

    Category.objects.get_or_create(slug="support", defaults={"name": "Support"})
    staff = User.objects.create_superuser(email="moderator@platform.test", password="x")
    submitted = market.listing_publish(
        access=owner,
        kind="agent",
        source_id=published_agent.pk,
        title="Public helper",
        summary="Answers briefly.",
        category_slug="support",
        tags=["Support"],
    )
    market.version_approve(user=staff, version=submitted)
    listing = Listing.objects.get(pk=submitted.listing_id)
    ids["listing_slug"] = listing.slug
    ids["publisher_slug"] = listing.publisher.slug
    install = market.install(access=owner, listing=listing)
    ids["install_id"] = install.pk
    review = Review.objects.create(
        listing=listing, workspace=a, author=world.owner, rating=4, text="Fine"
    )
    ids["review_id"] = review.pk
    ids["purchase_id"] = Purchase.objects.create(
        buyer=a,
        listing=listing,
        version=submitted,
        publisher=listing.publisher,
        pricing=Purchase.Pricing.MONTHLY,
        unit_amount_cents=900,
        fee_percent=20,
        status=Purchase.Status.ACTIVE,
    ).pk
    return Ids(ids)


# ------------------------------------------------------------------ parameter fixtures

# A parameter whose name says what it is, in every route that uses it.
BY_NAME: dict[str, Callable[[Ids], Any]] = {
    "workspace_slug": lambda i: i["workspace_slug"],
    "workspace": lambda i: i["workspace_slug"],
    "agent_id": lambda i: i["agent_id"],
    "workflow_id": lambda i: i["workflow_id"],
    "trigger_id": lambda i: i["trigger_id"],
    "knowledge_base_id": lambda i: i["knowledge_base_id"],
    "document_id": lambda i: i["document_id"],
    "conversation_id": lambda i: i["conversation_id"],
    "turn_id": lambda i: i["turn_id"],
    "host_id": lambda i: i["host_id"],
    "connection_id": lambda i: i["connection_id"],
    "credential_id": lambda i: i["credential_id"],
    "alias_id": lambda i: i["alias_id"],
    "dataset_id": lambda i: i["dataset_id"],
    "evaluation_id": lambda i: i["evaluation_id"],
    "membership_id": lambda i: i["membership_id"],
    "invitation_id": lambda i: i["invitation_id"],
    "key_id": lambda i: i["api_key_id"],
    "install_id": lambda i: i["install_id"],
    "review_id": lambda i: i["review_id"],
    "purchase_id": lambda i: i["purchase_id"],
    "export_id": lambda i: i["export_id"],
    "domain_id": lambda i: i["domain_id"],
    "provider_id": lambda i: i["provider_id"],  # allauth's OpenID Connect login and callback
    "notification_id": lambda i: i["notification_id"],
    "organization_slug": lambda i: i["provider_id"],  # allauth's SAML login, ACS, metadata
    "share_id": lambda i: i["share_id"],
    "share_key": lambda i: i["share_key"],  # a shared chat's public routes (agents/embed)
    "space": lambda i: i["workspace_slug"],
    "resume_token": lambda i: "r" * 40,  # an unknown token: the hook must refuse it cleanly
    "uidb36": lambda i: "1",
}

# Parameters whose meaning depends on the route: each route that uses one is listed.
BY_ROUTE: dict[str, dict[str, Callable[[Ids], Any]]] = {
    "agent_restore": {"number": lambda i: i["agent_version"]},
    "agent_run_status": {"run_id": lambda i: i["agent_run_id"]},
    "agent_run_detail": {"run_id": lambda i: i["agent_run_id"]},
    "agent_run_cache_wrong": {"run_id": lambda i: i["agent_run_id"]},
    "workflow_step_save": {"step_id": lambda i: "a"},
    "workflow_step_delete": {"step_id": lambda i: "a"},
    "workflow_step_test": {"step_id": lambda i: "a"},
    "workflow_version_publish": {"number": lambda i: i["workflow_version"]},
    "workflow_version_rollback": {"number": lambda i: i["workflow_version"]},
    "workflow_run_detail": {"run_id": lambda i: i["workflow_run_id"]},
    "workflow_run_cancel": {"run_id": lambda i: i["workflow_run_id"]},
    "workflow_run_resume": {"run_id": lambda i: i["workflow_run_id"]},
    "workflow_run_rerun": {"run_id": lambda i: i["workflow_run_id"]},
    "workflow_step_retry": {
        "run_id": lambda i: i["workflow_run_id"],
        "step_id": lambda i: i["first_step_id"],
    },
    "workflow_step_decide": {
        "run_id": lambda i: i["workflow_run_id"],
        "step_id": lambda i: i["approval_step_id"],
    },
    "share_conversation": {"conversation_id": lambda i: i["share_conversation_id"]},
    "share_conversation_delete": {"conversation_id": lambda i: i["share_conversation_id"]},
    "workflow_template_use": {"key": lambda i: "support-triage"},
    "workflow_hook_trigger": {"token": lambda i: i["trigger_token"]},
    "invitation_accept": {"token": lambda i: i["invitation_token"]},
    "workspace_restore": {"slug": lambda i: i["workspace_slug"]},
    "account_confirm_email": {"key": lambda i: "not-a-key"},
    "account_reset_password_from_key": {"key": lambda i: "set-password"},
    "marketplace_listing": {"slug": lambda i: i["listing_slug"]},
    "marketplace_install": {"slug": lambda i: i["listing_slug"]},
    "marketplace_buy": {"slug": lambda i: i["listing_slug"]},
    "marketplace_review": {"slug": lambda i: i["listing_slug"]},
    "marketplace_flag": {"slug": lambda i: i["listing_slug"]},
    "marketplace_publisher": {"slug": lambda i: i["publisher_slug"]},
    "api-member": {"pk": lambda i: i["membership_id"]},
    "api-invitation": {"pk": lambda i: i["invitation_id"]},
    "api-key": {"pk": lambda i: i["api_key_id"]},
    "api-agent": {"pk": lambda i: i["agent_id"]},
    "api-evals-dataset": {"pk": lambda i: i["dataset_id"]},
    "api-evals-evaluation": {"pk": lambda i: i["evaluation_id"]},
    "api-evals-evaluation-results": {"pk": lambda i: i["evaluation_id"]},
    "api-agent-runs": {"pk": lambda i: i["agent_id"]},
    "api-agent-run": {"pk": lambda i: i["agent_id"], "run_id": lambda i: i["agent_run_id"]},
    "api-workflow-template": {"key": lambda i: "support-triage"},
    "api-workflow-template-instantiate": {"key": lambda i: "support-triage"},
    "api-workflow-run": {"run_id": lambda i: i["workflow_run_id"]},
    "api-workflow-run-cancel": {"run_id": lambda i: i["workflow_run_id"]},
    "api-workflow-run-resume": {"run_id": lambda i: i["workflow_run_id"]},
    "api-workflow-run-rerun": {"run_id": lambda i: i["workflow_run_id"]},
    "api-workflow-step": {"step_id": lambda i: i["first_step_id"]},
    "api-workflow-step-retry": {"step_id": lambda i: i["first_step_id"]},
    "api-workflow-step-approval": {"step_id": lambda i: i["approval_step_id"]},
    "api-workflow": {"pk": lambda i: i["workflow_id"]},
    "api-workflow-archive": {"pk": lambda i: i["workflow_id"]},
    "api-workflow-restore": {"pk": lambda i: i["workflow_id"]},
    "api-workflow-export": {"pk": lambda i: i["workflow_id"]},
    "api-workflow-versions": {"pk": lambda i: i["workflow_id"]},
    "api-workflow-version-diff": {"pk": lambda i: i["workflow_id"]},
    "api-workflow-version": {
        "pk": lambda i: i["workflow_id"],
        "number": lambda i: i["workflow_version"],
    },
    "api-workflow-version-publish": {
        "pk": lambda i: i["workflow_id"],
        "number": lambda i: i["workflow_version"],
    },
    "api-workflow-version-rollback": {
        "pk": lambda i: i["workflow_id"],
        "number": lambda i: i["workflow_version"],
    },
    "api-workflow-version-step-test": {
        "pk": lambda i: i["workflow_id"],
        "number": lambda i: i["workflow_version"],
        "step_id": lambda i: "a",
    },
    "api-workflow-runs": {"pk": lambda i: i["workflow_id"]},
    "api-market-listing": {"slug": lambda i: i["listing_slug"]},
    "api-market-listing-versions": {"slug": lambda i: i["listing_slug"]},
    "api-market-listing-reviews": {"slug": lambda i: i["listing_slug"]},
    "api-market-listing-flags": {"slug": lambda i: i["listing_slug"]},
    "api-market-listing-install": {"slug": lambda i: i["listing_slug"]},
    # Stripe's webhooks (dj-stripe): an endpoint that is not registered answers 400/404.
    "stripe_webhook": {"uuid": lambda i: "00000000-0000-4000-8000-000000000000"},
    "djstripe:djstripe_webhook_by_uuid": {"uuid": lambda i: "00000000-0000-4000-8000-000000000000"},
}


@dataclass(frozen=True)
class Route:
    pattern: str  # the full route, for messages
    name: str
    params: tuple[str, ...]
    admin: bool


def _walk(
    patterns: list[URLPattern | URLResolver], prefix: str = "", namespace: str = ""
) -> Iterator[tuple[str, str, URLPattern, tuple[str, ...]]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(
                entry.url_patterns,
                prefix + str(entry.pattern),
                entry.namespace or namespace,
            )
        else:
            yield prefix + str(entry.pattern), namespace, entry, ()


def all_routes() -> list[Route]:
    """Every URL pattern the resolver serves, with the names of its parameters."""
    routes = []
    for full, namespace, entry, _ in _walk(get_resolver().url_patterns):
        names = tuple(_parameters(full))
        name = f"{namespace}:{entry.name}" if namespace and entry.name else (entry.name or full)
        routes.append(Route(full, name, names, admin=namespace == "admin"))
    return routes


def _parameters(route: str) -> list[str]:
    names = re.findall(r"<(?:\w+:)?(\w+)>", route)
    names += re.findall(r"\(\?P<(\w+)>", route)
    return names


def _fill(route: Route, ids: Ids) -> str | None:
    """The route's path with A's ids filled in, or None when a parameter has no fixture."""
    values: dict[str, Any] = {}
    for param in route.params:
        maker = BY_ROUTE.get(route.name, {}).get(param) or BY_NAME.get(param)
        if route.admin:
            maker = maker or ADMIN_PARAMS.get(param)
        if maker is None:
            return None
        values[param] = maker(ids)

    def typed(match: re.Match[str]) -> str:
        return str(values[match.group(1)])

    path = re.sub(r"<(?:\w+:)?(\w+)>", typed, route.pattern)
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", typed, path)
    path = path.replace("^", "").replace("$", "")
    return "/" + path


# The admin's own parameters (staff-only pages: every persona here must be sent to sign in).
ADMIN_PARAMS: dict[str, Callable[[Ids], Any]] = {
    "app_label": lambda i: "tenants",
    "object_id": lambda i: "1",
    "content_type_id": lambda i: "1",
    "url": lambda i: "x",
    "id": lambda i: "1",
    "action_name": lambda i: "sync",
    "model_name": lambda i: "x",
}


# ------------------------------------------------------------------ what A holds


def _table_md5(cursor: Any, table: str, workspace_id: int | None = None) -> str:
    """One checksum of a table's rows (only workspace `workspace_id`'s, when given). The table
    names come from PostgreSQL's catalogue, never from input."""
    where = "" if workspace_id is None else " WHERE t.workspace_id = %s"
    # A key's last use is bookkeeping, not a change to the workspace.
    row = "(to_jsonb(t) - 'last_used_at')::text"
    sql = f"SELECT md5(coalesce(string_agg({row}, '|' ORDER BY {row}), '')) FROM {table} t"  # noqa: S608
    cursor.execute(sql + where, [] if workspace_id is None else [workspace_id])
    return str(cursor.fetchone()[0])


def _digest_of_a(world: World, users: list[User]) -> str:
    """A fingerprint of everything that belongs to workspace A: every table of its schema, the
    public rows that carry its id, its workspace row and its people."""
    digest = hashlib.sha256()
    schema = world.workspace_a.schema_name
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
            [schema],
        )
        for (table,) in cursor.fetchall():
            rows = _table_md5(cursor, f'"{schema}"."{table}"')
            digest.update(f"{table}={rows};".encode())
        cursor.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND column_name = 'workspace_id' ORDER BY table_name"
        )
        for (table,) in cursor.fetchall():
            rows = _table_md5(cursor, f'public."{table}"', world.workspace_a.pk)
            digest.update(f"public.{table}={rows};".encode())
        cursor.execute(
            "SELECT md5(t::text) FROM public.tenants_workspace t WHERE id = %s",
            [world.workspace_a.pk],
        )
        digest.update(str(cursor.fetchone()).encode())
        cursor.execute(
            "SELECT string_agg(concat_ws(',', id, email, password, is_active, is_staff), '|' "
            "ORDER BY id) FROM public.accounts_user WHERE id = ANY(%s)",
            [[u.pk for u in users]],
        )
        digest.update(str(cursor.fetchone()).encode())
    return digest.hexdigest()


# ------------------------------------------------------------------ the sweep

# Routes whose secret token is the permission: whoever holds the link may see what it opens.
CAPABILITY_ROUTES = {
    # A shared chat: the key in its URL is the permission (docs/embed.md).
    "share_page",
    "share_frame",
    "share_logo",
    "api-share-visitor-tokens",
    "api-share-visitor-conversation",
    "invitation_accept",  # the invitation's own page: workspace, inviter and invited address
}

READS = ("get",)
WRITES = ("post", "put", "patch", "delete")
WEB_WRITES = ("post",)


def _methods(route: Route, *, writes_only: bool) -> tuple[str, ...]:
    writes = WRITES if route.pattern.startswith("api/") else WEB_WRITES
    return writes if writes_only else READS + writes


def _request(client: Client, method: str, path: str) -> Any:
    if method == "get":
        return client.get(path)
    return getattr(client, method)(path, data="{}", content_type="application/json")


def _in_workspace_a(route: Route) -> bool:
    return route.pattern.startswith("w/<slug:workspace_slug>/")


@dataclass
class Persona:
    name: str
    client: Client
    writes_only: bool  # A's viewer may read A; only what they try to change is checked
    may_see_a: bool


def _personas(world: World, viewer: User) -> list[Persona]:
    def session(user: User) -> Client:
        client = Client(raise_request_exception=False)
        client.force_login(user)
        return client

    def key(workspace: Any, owner: User, scopes: list[str]) -> Client:
        _, secret = tenant_services.api_key_create(
            access=access_of(owner, workspace), name="sweep", scopes=scopes
        )
        client = APIClient(raise_request_exception=False)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return [
        Persona("anonymous", Client(raise_request_exception=False), False, False),
        Persona("outsider session", session(world.outsider), False, False),
        Persona(
            "outsider API key",
            key(world.workspace_b, world.outsider, list(API_KEY_SCOPES)),
            False,
            False,
        ),
        Persona("A's viewer session", session(viewer), True, True),
        Persona(
            "A's viewer API key",
            key(world.workspace_a, world.owner, [Perm.WORKSPACE_VIEW, Perm.MEMBERS_VIEW]),
            True,
            True,
        ),
    ]


def test_every_route_has_a_parameter_fixture() -> None:
    missing = [
        f"{route.pattern} ({route.name}): {param}"
        for route in all_routes()
        for param in route.params
        if not (
            BY_ROUTE.get(route.name, {}).get(param)
            or BY_NAME.get(param)
            or (route.admin and ADMIN_PARAMS.get(param))
        )
    ]
    assert not missing, "Add parameter fixtures to tests/core/test_route_sweep.py for:\n" + (
        "\n".join(missing)
    )
    stale = set(BY_ROUTE) - {route.name for route in all_routes()}
    assert not stale, f"Fixtures for routes that no longer exist: {sorted(stale)}"


def test_every_api_operation_is_a_swept_route() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    # drf-spectacular names a `pk` parameter `id`.
    swept = {
        "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route.pattern).replace("{pk}", "{id}")
        for route in all_routes()
        if route.pattern.startswith("api/")
    }
    unswept = sorted(path for path in schema["paths"] if path not in swept)
    assert not unswept, f"API operations the sweep does not reach: {unswept}"


def test_no_route_reveals_or_changes_workspace_a_or_fails(world: World) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    ids = _seed(world, viewer)
    people = [world.owner, world.member, viewer]
    routes = all_routes()
    assert len(routes) > 150
    assert any(r.admin for r in routes)
    personas = _personas(world, viewer)
    before = _digest_of_a(world, people)
    problems: list[str] = []
    requests = 0

    for persona in personas:
        for route in routes:
            path = _fill(route, ids)
            assert path is not None, route  # test_every_route_has_a_parameter_fixture says which
            for method in _methods(route, writes_only=persona.writes_only):
                response = _request(persona.client, method, path)
                requests += 1
                where = f"{persona.name} {method.upper()} {path}"
                if response.status_code >= 500:
                    problems.append(f"{where}: {response.status_code}")
                    continue
                body = b"".join(response) if response.streaming else response.content
                if (
                    not persona.may_see_a
                    and route.name not in CAPABILITY_ROUTES
                    and MARKER.encode() in body.lower()
                ):
                    problems.append(f"{where}: reveals workspace A's data")
                if (
                    not persona.may_see_a
                    and _in_workspace_a(route)
                    and 200 <= response.status_code < 300
                ):
                    problems.append(f"{where}: {response.status_code} on a page of workspace A")
            if persona.writes_only or route.pattern.startswith(("api/", "w/")):
                after = _digest_of_a(world, people)
                if after != before:
                    problems.append(f"{persona.name} changed workspace A through {path}")
                    before = after

    assert not problems, f"{len(problems)} problems in {requests} requests:\n" + "\n".join(problems)
