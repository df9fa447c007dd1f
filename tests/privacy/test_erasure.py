"""Deleting an account, verified row by row: after the erasure, no row of any table in any
schema (public, and every workspace's) holds the person's address, name, IP address, browser
or a word they wrote, while financial rows still sum to the same balances."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import User
from agents.models import (
    AgentRun,
    CachedResponse,
    CacheReport,
    Conversation,
    ConversationTurn,
)
from agents.services import agent_create
from marketplace.models import LedgerEntry, Purchase, Review
from notifications.kinds import Kind
from notifications.models import Notification, Preference
from notifications.services import Event, notify
from privacy import services
from privacy.erasure import PUBLIC_STEPS, WORKSPACE_STEPS
from privacy.models import AccountErasure, ExportJob
from tenants import services as tenant_services
from tenants.audit import Action
from tenants.models import (
    AuditEvent,
    EmailDomain,
    Invitation,
    Membership,
    Role,
    Workspace,
)
from tests.helpers.money import make_purchase, make_shop
from tests.helpers.personas import PASSWORD, World, access_of, logged_in, make_user
from workflows import engine, runs
from workflows.models import StepRun, WorkflowRun
from workflows.services import workflow_create

pytestmark = pytest.mark.django_db

MARK = "qerinx"  # in everything the person wrote; must appear in no row afterwards
EMAIL = f"{MARK}.person@alpha.test"
NAME = "Qerinx Person"
IP = "203.0.113.77"
BROWSER = f"{MARK}Browser/9.1"
FLOW: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"q": {"type": "string"}},
    "steps": [
        {"id": "a", "type": "transform", "config": {"value": "{{ input.q }}"}},
        {"id": "review", "type": "approval", "config": {"message": "Ship it?"}},
    ],
    "edges": [{"from": "a", "to": "review"}],
}


def _rows_mentioning(needle: str) -> list[str]:
    """`schema.table` (with a count) of every row, in every schema, whose text holds `needle`."""
    found = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
            "('pg_catalog', 'information_schema') ORDER BY 1, 2"
        )
        for schema, table in cursor.fetchall():
            cursor.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" t WHERE t::text ILIKE %s',  # noqa: S608
                [f"%{needle}%"],
            )
            count = cursor.fetchone()[0]
            if count:
                found.append(f"{schema}.{table} ({count})")
    return found


def _balances() -> dict[str, Any]:
    return {
        "purchases": list(
            Purchase.objects.values("publisher_id").annotate(t=Sum("unit_amount_cents"))
        ),
        "ledger": list(
            LedgerEntry.objects.values("publisher_id", "bucket").annotate(t=Sum("amount_cents"))
        ),
    }


def _seed_person(world: World) -> User:
    """A member of A who did a bit of everything, in A and (before leaving it) in B."""
    person = make_user(EMAIL)
    person.full_name = NAME
    person.save(update_fields=["full_name"])
    alpha, bravo = world.workspace_a, world.workspace_b
    owner_access = access_of(world.owner, alpha)
    invitation, _ = tenant_services.invitation_create(
        access=owner_access, email=EMAIL, role=Role.MEMBER
    )
    Invitation.objects.filter(pk=invitation.pk).update(accepted_at=timezone.now())
    Membership.objects.create(user=person, workspace=alpha, role=Role.MEMBER)
    access = access_of(person, alpha)
    AuditEvent.objects.create(
        action=Action.AGENT_CREATED,
        actor=person,
        actor_label=EMAIL,
        workspace=alpha,
        ip_address=IP,
        user_agent=BROWSER,
    )
    AuditEvent.objects.create(
        action=Action.SIGN_IN_FAILED, actor_label="", target_label=EMAIL, ip_address=IP
    )
    with schema_context(alpha.schema_name):
        agent = agent_create(access=access, name="Invoice helper", model="offline:demo")
        version = agent.current_version
        assert version is not None
        run = AgentRun.objects.create(
            agent=agent,
            version=version,
            input=f"{MARK} asks about their invoice",
            output=f"Dear {NAME}",
            created_by_id=person.pk,
            input_tokens=10,
            cost_usd="0.002",
        )
        conversation = Conversation.objects.create(
            agent=agent, title=f"Chat of {MARK}", created_by_id=person.pk
        )
        turn = ConversationTurn.objects.create(
            conversation=conversation,
            version=version,
            question=f"my name is {NAME}",
            answer=f"hello {MARK}",
            status=ConversationTurn.Status.DONE,
        )
        CachedResponse.objects.create(
            model="offline:demo",
            prompt=f"prompt {MARK}",
            question=f"q {MARK}",
            key_sha256="a" * 64,
            context_sha256="b" * 64,
            user_id=person.pk,
            embedder="hash",
            embedding=[0.1] * 384,
            answer=f"a {MARK}",
        )
        CacheReport.objects.create(question=f"q {MARK}", turn_id=turn.pk, run_id=run.pk)
        workflow = workflow_create(access=owner_access, name="Intake", definition=FLOW)
        wf_run = runs.run_start(
            workflow=workflow, inputs={"q": f"{MARK} input"}, trigger="manual", access=access
        )
        for node_id in ("a", "review"):
            engine.step_execute(StepRun.objects.get(run_id=wf_run.pk, node_id=node_id).pk)
        StepRun.objects.filter(run=wf_run, node_id="review").update(
            decided_by_id=person.pk, decision_comment=f"ok from {MARK}"
        )
    with schema_context(bravo.schema_name):  # a workspace they have since left
        agent_b = agent_create(
            access=access_of(world.outsider, bravo), name="Helper", model="offline:demo"
        )
        Conversation.objects.create(
            agent=agent_b, title=f"Old chat of {MARK}", created_by_id=person.pk
        )
    shop = make_shop(workspace=bravo)
    Review.objects.create(
        listing=shop.listing, workspace=alpha, author=person, rating=5, text=f"{MARK} loves it"
    )
    purchase = make_purchase(shop, buyer=alpha)
    Purchase.objects.filter(pk=purchase.pk).update(bought_by=person)
    LedgerEntry.objects.create(
        publisher=shop.publisher,
        purchase=purchase,
        kind=LedgerEntry.Kind.SALE,
        bucket=LedgerEntry.Bucket.PENDING,
        amount_cents=2000,
        gross_cents=2500,
        fee_cents=500,
        occurred_at=timezone.now(),
        idempotency_key=f"sale:{purchase.pk}:0",
    )
    # signed in through the workspace's IdP, with two-factor on, and claimed a domain
    SocialAccount.objects.create(
        user=person,
        provider=f"workspace-{alpha.pk}",
        uid=f"{MARK}-subject",
        extra_data={"email": EMAIL, "name": NAME},
    )
    Authenticator.objects.create(
        user=person, type=Authenticator.Type.TOTP, data={"secret": f"{MARK}-secret"}
    )
    notify(
        user_ids=[person.pk],
        event=Event(
            kind=Kind.RUN_FAILED,
            dedupe_key=f"erasure-{MARK}",
            title=f"Run for {MARK} failed",
            url="/",
            workspace_id=alpha.pk,
        ),
    )
    Preference.objects.create(user=person, kind=Kind.RUN_FAILED, in_app=True, email=False)
    domain = EmailDomain.objects.create(
        workspace=alpha, domain="qx-claimed.example", token="tok", created_by=person
    )
    job = ExportJob.objects.create(kind=ExportJob.Kind.ACCOUNT, requested_by=person)
    services.export_build(job_id=job.pk)
    assert domain.created_by_id == person.pk
    return person


def test_after_erasure_no_table_in_any_schema_holds_their_data(world: World) -> None:
    person = _seed_person(world)
    logged_in(person)  # a live session
    export = ExportJob.objects.get(requested_by=person)
    archive = services.export_path(export)
    assert archive is not None
    assert archive.exists()
    for needle in (MARK, NAME, IP):
        assert _rows_mentioning(needle), f"the seed should hold {needle!r}"
    balances = _balances()
    purchase_id = Purchase.objects.get(bought_by=person).pk

    erasure = services.account_delete(user=person, password=PASSWORD)
    services.account_erasure_sweep(erasure_id=erasure.pk)

    for needle in (MARK, NAME, IP, EMAIL):
        assert _rows_mentioning(needle) == [], (
            f"{needle!r} is still stored: {_rows_mentioning(needle)}"
        )
    assert _balances() == balances
    tombstone = User.objects.get(pk=person.pk)
    assert tombstone.email == f"deleted-user-{person.pk}@deleted.invalid"
    assert not tombstone.is_active
    assert not tombstone.has_usable_password()
    assert Purchase.objects.get(pk=purchase_id).bought_by_id == person.pk  # the link, anonymous
    assert not archive.exists()
    assert not Membership.objects.filter(user_id=person.pk).exists()
    audit = AuditEvent.objects.filter(actor_id=person.pk).exclude(action=Action.ACCOUNT_DELETED)
    assert {e.actor_label for e in audit} == {f"Deleted user #{person.pk}"}
    with schema_context(world.workspace_a.schema_name):
        run = AgentRun.objects.get()
        assert (run.input, run.output, run.created_by_id) == ("", "", None)
        assert run.input_tokens == 10  # usage kept
        assert not Conversation.objects.exists()
        assert WorkflowRun.objects.get().inputs == {}
    with schema_context(world.workspace_b.schema_name):
        assert not Conversation.objects.filter(title__contains=MARK).exists()
    assert AccountErasure.objects.get(pk=erasure.pk).finished_at is not None
    assert Review.objects.get(author_id=person.pk).rating == 5
    assert not SocialAccount.objects.filter(user_id=person.pk).exists()
    assert not Authenticator.objects.filter(user_id=person.pk).exists()
    assert not Notification.objects.filter(user_id=person.pk).exists()
    assert not Preference.objects.filter(user_id=person.pk).exists()
    claimed = EmailDomain.objects.get(domain="qx-claimed.example")
    assert claimed.created_by_id is None  # the workspace keeps its domain


def test_the_sweep_resumes_and_a_second_run_changes_nothing(world: World) -> None:
    person = _seed_person(world)
    erasure = services.account_delete(user=person, password=PASSWORD)
    # A worker died after workspace A: the record says so, the sweep goes on from there.
    AccountErasure.objects.filter(pk=erasure.pk).update(
        swept_through_workspace_id=world.workspace_a.pk
    )
    services.account_erasure_sweep(erasure_id=erasure.pk)
    with schema_context(world.workspace_b.schema_name):
        assert not Conversation.objects.filter(title__contains=MARK).exists()
    AccountErasure.objects.filter(pk=erasure.pk).update(
        swept_through_workspace_id=0, finished_at=None
    )
    services.account_erasure_sweep(erasure_id=erasure.pk)
    services.account_erasure_sweep(erasure_id=erasure.pk)
    assert _rows_mentioning(NAME) == []


def test_every_erasure_step_names_a_real_table() -> None:
    from django.apps import apps

    for step in [*PUBLIC_STEPS, *WORKSPACE_STEPS]:
        assert apps.get_model(step.model) is not None
        assert step.why


def test_a_wrong_password_changes_nothing(world: World) -> None:
    person = _seed_person(world)
    with pytest.raises(Exception, match="password is not correct"):
        services.account_delete(user=person, password="nope")
    person.refresh_from_db()
    assert person.email == EMAIL
    assert person.is_active


def test_the_last_owner_of_a_shared_workspace_is_stopped(world: World, owner: User) -> None:
    with pytest.raises(Exception, match="only owner of Alpha Inc"):
        services.account_delete(user=owner, password=PASSWORD)
    owner.refresh_from_db()
    assert owner.is_active


def test_a_workspace_only_they_belong_to_is_scheduled_for_deletion(world: World) -> None:
    solo = make_user("solo@bravo.test")
    workspace = tenant_services.workspace_create(user=solo, name="Solo", slug="solo-space")
    services.account_delete(user=solo, password=PASSWORD)
    workspace.refresh_from_db()
    assert workspace.deletion_requested_at is not None
    assert workspace.purge_after is not None
    assert workspace.purge_after - workspace.deletion_requested_at == timedelta(days=14)
    # Staff can still restore it; nobody else belongs to it any more.
    assert not Membership.objects.filter(workspace=workspace).exists()


def test_the_delete_page_signs_them_out_and_they_cannot_sign_in_again(world: World) -> None:
    person = _seed_person(world)
    client = logged_in(person)
    response = client.post(reverse("account_delete"), {"password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("account_privacy")).status_code == 302  # signed out
    assert not Client().login(email=EMAIL, password=PASSWORD)
    assert AuditEvent.objects.filter(action=Action.ACCOUNT_DELETED).exists()


def test_the_delete_page_explains_a_blocked_deletion(owner_client: Client) -> None:
    page = owner_client.get(reverse("account_privacy")).content.decode()
    assert "You are the only owner of" in page
    assert "Alpha Inc" in page
    response = owner_client.post(reverse("account_delete"), {"password": PASSWORD})
    assert response.status_code == 400
    assert "You are the only owner of" in response.content.decode()


def test_a_wrong_password_is_shown_beside_the_field(member_client: Client) -> None:
    response = member_client.post(reverse("account_delete"), {"password": "wrong"})
    assert response.status_code == 400
    assert "The password is not correct." in response.content.decode()
    assert Workspace.objects.filter(slug="alpha").exists()


def test_an_sso_only_account_confirms_with_its_address_and_a_recent_sign_in(
    world: World,
) -> None:
    # given: someone who signs in only through the workspace's identity provider (no password)
    person = make_user("sso.only@alpha.test")
    person.set_unusable_password()
    person.save(update_fields=["password"])
    client = logged_in(person)
    User.objects.filter(pk=person.pk).update(last_login=timezone.now() - timedelta(minutes=30))
    page = client.get(reverse("account_privacy")).content.decode()
    assert 'name="confirm_email"' in page
    assert 'name="password"' not in page

    # when: the address is mistyped, or the sign-in is 30 minutes old: refused beside the field
    wrong = client.post(reverse("account_delete"), {"confirm_email": "someone@else.test"})
    assert wrong.status_code == 400
    assert "Type sso.only@alpha.test exactly" in wrong.content.decode()
    stale = client.post(reverse("account_delete"), {"confirm_email": "SSO.only@alpha.test"})
    assert stale.status_code == 400
    assert "sign in again" in stale.content.decode()
    person.refresh_from_db()
    assert person.is_active

    # then: just after signing in again, the typed address deletes the account
    User.objects.filter(pk=person.pk).update(last_login=timezone.now())
    done = client.post(reverse("account_delete"), {"confirm_email": "sso.only@alpha.test"})
    assert done.status_code == 302
    person.refresh_from_db()
    assert not person.is_active
    assert person.email == f"deleted-user-{person.pk}@deleted.invalid"
