"""Each event kind makes exactly one notification for the people it concerns, and none for
anyone else (other members, another workspace); emails follow each person's preferences."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django_tenants.utils import schema_context

from accounts.models import User
from agents.models import AgentRun
from agents.runs.executor import MAX_ATTEMPTS, execute_run
from agents.services import agent_create, agent_run_start
from billing.models import Plan
from billing.plans import default_plan
from marketplace import services as market
from marketplace.models import Category, Review
from notifications.kinds import Kind
from notifications.models import Notification
from notifications.services import Event, notify, preferences_set
from tenants import services as tenant_services
from tenants.models import Membership, Role
from tests.helpers.notifications import deliver_emails, kinds_of
from tests.helpers.personas import World, access_of, make_user
from tests.helpers.workflows import drain, flow, start, step, transform
from workflows import runs
from workflows.models import StepRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(world: World) -> User:
    user = make_user("viewer@alpha.test")
    Membership.objects.get_or_create(
        user=user, workspace=world.workspace_a, defaults={"role": Role.VIEWER}
    )
    return user


def _approval_flow(approvers: str = "members") -> dict[str, Any]:
    return flow(
        [
            transform("draft", "Draft"),
            {
                "id": "review",
                "type": "approval",
                "name": "Sign-off",
                "config": {"message": "Publish it?", "approvers": approvers},
            },
            transform("publish", "published"),
        ],
        [("draft", "review"), ("review", "publish", "approved")],
    )


def _waiting_run(world: World, capture: Any, approvers: str = "members") -> Any:
    with schema_context(world.workspace_a.schema_name), capture(execute=True):
        run = start(_approval_flow(approvers), access=access_of(world.owner, world.workspace_a))
        drain()
    return run


def test_an_approval_notifies_the_members_allowed_to_decide_and_nobody_else(
    world: World, viewer: User, django_capture_on_commit_callbacks: Any
) -> None:
    run = _waiting_run(world, django_capture_on_commit_callbacks)
    assert kinds_of(world.owner.pk) == [Kind.APPROVAL_WAITING]
    assert kinds_of(world.member.pk) == [Kind.APPROVAL_WAITING]
    assert kinds_of(viewer.pk) == []  # a viewer may not decide
    assert kinds_of(world.outsider.pk) == []
    notification = Notification.objects.get(user=world.member)
    assert notification.title == f"Approval waiting: “Sign-off” in Flow (run #{run.pk})"
    assert notification.body == "Publish it?"
    assert notification.url == f"/w/alpha/workflows/runs/{run.pk}/"
    assert notification.workspace_id == world.workspace_a.pk
    assert notification.actionable


def test_an_admins_only_approval_notifies_owners_and_admins_only(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    _waiting_run(world, django_capture_on_commit_callbacks, approvers="admins")
    assert kinds_of(world.owner.pk) == [Kind.APPROVAL_WAITING]
    assert kinds_of(world.member.pk) == []


def test_a_redelivered_step_notifies_once(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    run = _waiting_run(world, django_capture_on_commit_callbacks)
    with schema_context(world.workspace_a.schema_name):
        review = step(run, "review")
        # the same wait, delivered again (a redelivered task re-runs the engine's after-commit work)
        from workflows import notices

        with django_capture_on_commit_callbacks(execute=True):
            notices.approval_waiting(
                schema=world.workspace_a.schema_name,
                run_id=run.pk,
                workflow_id=run.workflow_id,
                step_id=review.pk,
                attempt=review.attempt,
                node_label="Sign-off",
                step_input=review.input,
            )
    assert Notification.objects.filter(user=world.member).count() == 1


def test_deciding_from_the_inbox_changes_the_run_and_retires_every_copy(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    run = _waiting_run(world, django_capture_on_commit_callbacks)
    client = Client()
    client.force_login(world.member)
    page = client.get("/notifications/")
    notification = Notification.objects.get(user=world.member)
    decide_url = notification.action["decide_url"]
    assert decide_url in page.content.decode()
    assert "Approve" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(decide_url, {"decision": "approve", "comment": "Ship it"})
    assert response.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        review = StepRun.objects.get(pk=step(run, "review").pk)
        assert review.branch == "approved"
        assert review.decided_by_id == world.member.pk
    for user in (world.owner, world.member):
        copy = Notification.objects.get(user=user)
        assert copy.resolved_at is not None
        assert copy.read_at is not None
        assert not copy.actionable
    owner = Client()
    owner.force_login(world.owner)
    assert decide_url not in owner.get("/notifications/").content.decode()


def test_an_outsider_cannot_decide_through_an_approval_link(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    run = _waiting_run(world, django_capture_on_commit_callbacks)
    decide_url = Notification.objects.get(user=world.member).action["decide_url"]
    client = Client()
    client.force_login(world.outsider)
    assert client.post(decide_url, {"decision": "approve"}).status_code == 404
    with schema_context(world.workspace_a.schema_name):
        assert step(run, "review").status == "waiting"


def test_a_failed_workflow_run_notifies_whoever_started_it(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    member = access_of(world.member, world.workspace_a)
    with (
        schema_context(world.workspace_a.schema_name),
        django_capture_on_commit_callbacks(execute=True),
    ):
        run = start(_approval_flow(), access=member)
        drain()
        # a rejection without a "rejected" edge fails the run
        runs.approval_decide(
            access=access_of(world.owner, world.workspace_a),
            step=step(run, "review"),
            approved=False,
            comment="Not now",
        )
        drain()
        run.refresh_from_db()
    assert run.status == "failed"
    assert kinds_of(world.member.pk) == [Kind.APPROVAL_WAITING, Kind.RUN_FAILED]
    assert kinds_of(world.owner.pk) == [Kind.APPROVAL_WAITING]
    Notification.objects.filter(kind=Kind.APPROVAL_WAITING).delete()
    failed = Notification.objects.get(user=world.member)
    assert failed.url == f"/w/alpha/workflows/runs/{run.pk}/"
    assert failed.email == Notification.Email.PENDING
    assert deliver_emails() == 1
    (sent,) = mail.outbox
    assert sent.to == [world.member.email]
    assert f"Workflow run #{run.pk} of Flow failed" in sent.subject
    assert f"/w/alpha/workflows/runs/{run.pk}/" in sent.body
    assert deliver_emails() == 0  # a redelivered task sends nothing


def test_a_failed_agent_run_notifies_whoever_started_it(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(
            access=access_of(world.owner, world.workspace_a), name="Helper", model="offline:demo"
        )
        version = agent.current_version
        assert version is not None
        run = AgentRun.objects.create(
            agent=agent,
            version=version,
            input="hi",
            status=AgentRun.Status.RUNNING,
            attempt=MAX_ATTEMPTS,
            created_by_id=world.member.pk,
        )
        with django_capture_on_commit_callbacks(execute=True):
            execute_run(run.pk)
            execute_run(run.pk)  # a duplicate message: the run has ended, nothing more
    assert kinds_of(world.member.pk) == [Kind.RUN_FAILED]
    assert kinds_of(world.owner.pk) == []
    assert Notification.objects.get(user=world.member).url == f"/w/alpha/agents/runs/{run.pk}/"


def test_quota_warnings_go_to_owners_and_admins(
    world: World, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.BILLING_QUOTAS = True
    Plan.objects.filter(pk=default_plan().pk).update(runs_per_month=5)
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(access=access, name="Helper", model="offline:demo")
        for _ in range(5):
            with django_capture_on_commit_callbacks(execute=True):
                agent_run_start(access=access, agent_id=agent.pk, input="hi")
    assert kinds_of(world.owner.pk) == [Kind.USAGE_WARNING, Kind.USAGE_WARNING]
    assert kinds_of(world.member.pk) == []
    assert kinds_of(world.outsider.pk) == []
    assert Notification.objects.filter(user=world.owner).first().url == "/w/alpha/billing/"


def _listing(world: World) -> Any:
    Category.objects.get_or_create(slug="support", defaults={"name": "Support"})
    access = access_of(world.member, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="Public helper",
            model="offline:demo",
            system_prompt="Be brief.",
        )
    return market.listing_publish(
        access=access,
        kind="agent",
        source_id=agent.pk,
        title="Public helper",
        summary="Answers briefly.",
        category_slug="support",
        tags=["Support"],
    )


def test_a_moderation_decision_notifies_whoever_submitted_the_version(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    version = _listing(world)
    staff = User.objects.create_superuser(email="moderator@platform.test", password="x")
    with django_capture_on_commit_callbacks(execute=True):
        market.version_request_changes(user=staff, version=version, reason="Add a summary.")
    assert kinds_of(world.member.pk) == [Kind.LISTING_MODERATED]
    assert kinds_of(world.owner.pk) == []
    notice = Notification.objects.get(user=world.member)
    assert "sent back" in notice.title
    assert "Add a summary." in notice.body
    assert deliver_emails() == 1
    assert mail.outbox[0].to == [world.member.email]


def test_a_reply_to_a_review_notifies_its_author(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    version = _listing(world)
    staff = User.objects.create_superuser(email="moderator@platform.test", password="x")
    market.version_approve(user=staff, version=version)
    reviewer = world.outsider  # bravo's owner reviews alpha's listing
    review = Review.objects.create(
        listing=version.listing, workspace=world.workspace_b, author=reviewer, rating=4, text="ok"
    )
    Notification.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        market.review_reply(
            access=access_of(world.owner, world.workspace_a), review=review, text="Thanks!"
        )
    assert kinds_of(reviewer.pk) == [Kind.REVIEW_REPLY]
    assert kinds_of(world.owner.pk) == []
    assert kinds_of(world.member.pk) == []
    assert Notification.objects.get(user=reviewer).body == "Thanks!"
    assert deliver_emails() == 0  # replies are in the inbox only, unless the author asks


def test_an_invitation_reaches_the_inbox_of_an_existing_account_only(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    existing = make_user("friend@example.com")
    access = access_of(world.owner, world.workspace_a)
    with django_capture_on_commit_callbacks(execute=True):
        invitation, token = tenant_services.invitation_create(
            access=access, email="Friend@Example.com", role=Role.MEMBER
        )
        tenant_services.invitation_create(access=access, email="nobody@example.com", role="member")
    assert kinds_of(existing.pk) == [Kind.INVITATION]
    assert Notification.objects.count() == 1
    notice = Notification.objects.get(user=existing)
    assert notice.url == f"/invitations/{token}/"
    assert notice.email == Notification.Email.NONE  # the invitation email itself was sent
    assert len(mail.outbox) == 2
    with django_capture_on_commit_callbacks(execute=True):
        tenant_services.invitation_revoke(access=access, invitation_id=invitation.pk)
    notice.refresh_from_db()
    assert notice.read_at is not None
    assert notice.resolved_at is not None


def test_preferences_choose_the_channels(world: World) -> None:
    event = Event(kind=Kind.RUN_FAILED, dedupe_key="k1", title="Run failed")
    preferences_set(user=world.owner, choices={Kind.RUN_FAILED: (False, True)})
    preferences_set(user=world.member, choices={Kind.RUN_FAILED: (True, False)})
    preferences_set(user=world.outsider, choices={Kind.RUN_FAILED: (False, False)})
    notify(user_ids=[world.owner.pk, world.member.pk, world.outsider.pk], event=event)
    owner_copy = Notification.objects.get(user=world.owner)
    assert (owner_copy.in_inbox, owner_copy.email) == (False, "pending")
    member_copy = Notification.objects.get(user=world.member)
    assert (member_copy.in_inbox, member_copy.email) == (True, "none")
    assert not Notification.objects.filter(user=world.outsider).exists()
    assert deliver_emails() == 1
    assert mail.outbox[0].to == [world.owner.email]


def test_the_same_event_twice_makes_one_notification(world: World) -> None:
    event = Event(kind=Kind.USAGE_WARNING, dedupe_key="budget:1:2026-12:80", title="80%")
    first = notify(user_ids=[world.owner.pk, world.owner.pk, None], event=event)
    again = notify(user_ids=[world.owner.pk], event=event)
    assert len(first) == 1
    assert again == []
    assert Notification.objects.filter(user=world.owner).count() == 1
