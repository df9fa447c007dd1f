from __future__ import annotations

import os
from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import User
from tenants.models import Membership, Workspace

pytestmark = pytest.mark.django_db


def _counts() -> tuple[int, int, int]:
    return User.objects.count(), Workspace.objects.count(), Membership.objects.count()


def test_demo_seed_is_idempotent_and_prints_the_logins() -> None:
    first = StringIO()
    call_command("seed_demo", stdout=first)
    after_first = _counts()
    second = StringIO()
    call_command("seed_demo", stdout=second)

    assert _counts() == after_first
    assert "already there" in second.getvalue()
    for email in ("admin@demo.local", "owner@demo.local", "member@demo.local"):
        assert email in first.getvalue()
    demo = Workspace.objects.get(slug="demo")
    roles = dict(Membership.objects.filter(workspace=demo).values_list("user__email", "role"))
    assert roles == {"owner@demo.local": "owner", "member@demo.local": "member"}
    assert User.objects.get(email="admin@demo.local").is_staff
    # The marketplace catalogue is loaded once and browsable.
    from marketplace.models import Listing

    public = Listing.objects.filter(current_version__isnull=False, unlisted_at__isnull=True)
    assert public.count() >= 60
    assert public.values("category").distinct().count() >= 15
    assert Listing.objects.filter(versions__number=2).count() == 0  # re-seeding made no versions
    # The demo installed, ran and reviewed a few agents: real figures, made once.
    from marketplace.demo import DEMO_REVIEWS
    from marketplace.models import Install, Review

    slugs = [slug for slug, _stars, _text in DEMO_REVIEWS]
    installs = Install.objects.filter(workspace=demo, listing__slug__in=slugs)
    assert installs.count() == len(slugs)
    assert all(install.runs_completed == 1 for install in installs)
    assert Review.objects.filter(workspace=demo).count() == len(slugs)
    drafter = Listing.objects.get(slug="support-reply-drafter")
    assert drafter.install_count == 1
    assert drafter.rating_avg == 5
    assert drafter.run_count == 1
    assert drafter.success_rate == 1.0
    assert drafter.p95_latency_ms is not None


def test_demo_users_can_sign_in_with_the_printed_password(client) -> None:
    call_command("seed_demo", stdout=StringIO())
    response = client.post(
        "/accounts/login/",
        {
            "login": "owner@demo.local",
            "password": os.environ.get("DEMO_PASSWORD", "demo-password-2026"),
        },
    )
    assert response.status_code == 302
    assert client.get("/go/")["Location"] == "/w/demo/"


def test_demo_workspace_has_runnable_agents_once() -> None:
    from django_tenants.utils import schema_context

    from agents.models import Agent
    from agents.runs.executor import execute_run
    from agents.services import agent_run_start
    from marketplace.demo import DEMO_REVIEWS
    from tenants.permissions import Access

    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())
    demo = Workspace.objects.get(slug="demo")
    owner = User.objects.get(email="owner@demo.local")
    with schema_context(demo.schema_name):
        names = sorted(
            Agent.objects.filter(listing_version_id__isnull=True).values_list("name", flat=True)
        )
        installed = Agent.objects.filter(listing_version_id__isnull=False).count()
        calculator = Agent.objects.get(name="Finance calculator")
        run = agent_run_start(
            access=Access(workspace=demo, user=owner, role="owner"),
            agent_id=calculator.pk,
            input="What is 1200 * 0.2?",
        )
        execute_run(run.pk)
        run.refresh_from_db()
    assert names == [
        "Finance calculator",
        "Meeting scheduler",
        "Research assistant",
        "SQL explainer",
        "Support triage",
    ]
    assert installed == len(DEMO_REVIEWS)  # the marketplace installs, once
    assert run.status == "succeeded"
    assert "240" in run.output


def test_demo_support_agent_cites_the_help_center_and_sql_explainer_answers_in_format() -> None:
    from django_tenants.utils import schema_context

    from agents.models import Agent, AllowedHost, KnowledgeBase
    from agents.runs.executor import execute_run
    from agents.services import agent_run_start
    from tenants.permissions import Access

    call_command("seed_demo", stdout=StringIO())
    demo = Workspace.objects.get(slug="demo")
    access = Access(workspace=demo, user=User.objects.get(email="owner@demo.local"), role="owner")
    with schema_context(demo.schema_name):
        assert (
            KnowledgeBase.objects.get(name="Help center").documents.filter(status="ready").exists()
        )
        assert AllowedHost.objects.filter(host="en.wikipedia.org").exists()
        support = agent_run_start(
            access=access,
            agent_id=Agent.objects.get(name="Support triage").pk,
            input="How long does a refund take?",
        )
        execute_run(support.pk)
        sql = agent_run_start(
            access=access,
            agent_id=Agent.objects.get(name="SQL explainer").pk,
            input="SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id",
        )
        execute_run(sql.pk)
        support.refresh_from_db()
        sql.refresh_from_db()
    assert support.status == "succeeded"
    assert "[1]" in support.output
    assert support.tool_steps[0]["tool"] == "knowledge_search"
    assert sql.status == "succeeded", sql.error
    assert set(sql.output_data) == {"summary", "tables", "risks"}
