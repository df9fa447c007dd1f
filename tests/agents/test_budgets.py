from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.gateway import budgets
from agents.gateway.calls import gateway_complete
from agents.models import UsageRecord, WorkspaceBudget
from agents.providers.base import ChatRequest, Message
from billing.models import ModelPrice
from tests.helpers.notifications import deliver_emails
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.django_db


def _ask(max_tokens: int = 100) -> ChatRequest:
    return ChatRequest(
        model="",
        max_tokens=max_tokens,
        messages=(Message(role="user", content="Summarise this ticket"),),
    )


@pytest.fixture
def priced() -> None:
    # $10 per million tokens in and out: 100 output tokens at most cost $0.001.
    ModelPrice.objects.create(
        provider="offline", model="metered", input_per_mtok=Decimal(10), output_per_mtok=Decimal(10)
    )


def test_a_call_that_could_overrun_the_monthly_budget_is_refused_unpaid(
    world: World, priced: None
) -> None:
    with schema_context(world.workspace_a.schema_name):
        budgets.budget_set(
            access=access_of(world.owner, world.workspace_a), monthly_cap_usd=Decimal("0.01")
        )
        UsageRecord.objects.create(
            kind="offline", model="metered", outcome="ok", cost_usd=Decimal("0.0095")
        )
        with pytest.raises(budgets.BudgetExceeded) as excinfo:
            gateway_complete(model="offline:metered", request=_ask())
        assert UsageRecord.objects.count() == 1  # no new call was made
    assert excinfo.value.status == 402
    assert "monthly budget" in excinfo.value.message
    assert "$0.01" in excinfo.value.message


def test_owners_and_admins_are_mailed_once_at_80_percent(
    world: World, priced: None, django_capture_on_commit_callbacks
) -> None:
    with schema_context(world.workspace_a.schema_name):
        budgets.budget_set(
            access=access_of(world.owner, world.workspace_a), monthly_cap_usd=Decimal("0.01")
        )
        UsageRecord.objects.create(
            kind="offline", model="metered", outcome="ok", cost_usd=Decimal("0.0079")
        )
        with django_capture_on_commit_callbacks(execute=True):
            gateway_complete(model="offline:metered", request=_ask(max_tokens=20))
            gateway_complete(model="offline:metered", request=_ask(max_tokens=20))
        warned = WorkspaceBudget.objects.get().warned_for_month
    deliver_emails()  # the worker's part: notification emails are sent by a task
    warnings = [m for m in mail.outbox if "80%" in m.subject]
    assert len(warnings) == 1
    assert warnings[0].to == ["owner@alpha.test"]  # the member is not an admin
    assert warned


def test_budgets_are_per_workspace(world: World, priced: None) -> None:
    with schema_context(world.workspace_a.schema_name):
        budgets.budget_set(
            access=access_of(world.owner, world.workspace_a), monthly_cap_usd=Decimal("0.01")
        )
        UsageRecord.objects.create(
            kind="offline", model="metered", outcome="ok", cost_usd=Decimal("0.01")
        )
        with pytest.raises(budgets.BudgetExceeded):
            gateway_complete(model="offline:metered", request=_ask())
    with schema_context(world.workspace_b.schema_name):
        outcome = gateway_complete(model="offline:metered", request=_ask())
    assert outcome.result.text


def test_owner_sets_the_budget_on_the_usage_page_and_members_cannot(
    world: World, owner_client: Client, member_client: Client, outsider_client: Client
) -> None:
    url = reverse("usage_budget", kwargs={"workspace_slug": "alpha"})
    assert owner_client.post(url, {"monthly_cap_usd": "25.50"}).status_code == 302
    assert member_client.post(url, {"monthly_cap_usd": "9999"}).status_code == 403
    assert outsider_client.post(url, {"monthly_cap_usd": "1"}).status_code == 404
    bad = owner_client.post(url, {"monthly_cap_usd": "-3"}, follow=True)
    assert "monthly_cap_usd" in bad.content.decode() or "greater than" in bad.content.decode()
    with schema_context(world.workspace_a.schema_name):
        assert WorkspaceBudget.objects.get().monthly_cap_usd == Decimal("25.50")
    page = owner_client.get(reverse("usage", kwargs={"workspace_slug": "alpha"}))
    assert "25.50" in page.content.decode()
