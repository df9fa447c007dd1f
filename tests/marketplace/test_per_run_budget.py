"""A per-run purchase's copy and the workspace's AI spend: with the spend used up (the monthly
budget, or what a plan without overage includes) its runs are refused before they start (402
budget_exceeded, naming the budget and how to raise it; nothing queued, nothing charged), since
an answer from the response cache would otherwise succeed and be charged. With spend left it
runs and is charged, and an answer from the response cache is a successful run: charged too."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django_tenants.utils import schema_context

from agents.gateway.budgets import BudgetExceeded
from agents.models import Agent, AgentRun, UsageRecord, WorkspaceBudget
from agents.services import agent_create, agent_run_start
from marketplace.models import Category, Publisher, Purchase, RunCharge
from tests.fakes import FakeStripe
from tests.helpers.agents import run_now
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def per_run_copy(
    world: World, fake_stripe: FakeStripe, publisher: Publisher, categories: dict[str, Category]
) -> Agent:
    """B's copy of a $0.25-per-run agent listing, bought per run, answering from the response
    cache when asked the same again."""
    listing = make_listing(
        publisher=publisher,
        category=categories["support"],
        title="Summariser",
        pricing="per_run",
        price_cents=25,
        index=False,
    )
    assert listing.current_version is not None
    type(listing.current_version).objects.filter(pk=listing.current_version.pk).update(
        pricing="per_run", price_cents=25
    )
    Purchase.objects.create(
        buyer=world.workspace_b,
        listing=listing,
        version=listing.current_version,
        publisher=publisher,
        pricing=Purchase.Pricing.PER_RUN,
        unit_amount_cents=25,
        fee_percent=Decimal(20),
        status=Purchase.Status.ACTIVE,
    )
    with schema_context(world.workspace_b.schema_name):
        agent = agent_create(
            access=access_of(world.outsider, world.workspace_b),
            name="Copy",
            model="offline:demo",
            cache_enabled=True,
        )
        Agent.objects.filter(pk=agent.pk).update(listing_version_id=listing.current_version_id)
        agent.refresh_from_db()
        return agent


def _spent(usd: str) -> None:
    """AI spend in the current workspace's ledger this month (an earlier priced call)."""
    UsageRecord.objects.create(
        kind="openai", model="gpt", outcome=UsageRecord.Outcome.OK, cost_usd=Decimal(usd)
    )


def test_an_answer_from_the_response_cache_is_charged_like_any_successful_run(
    world: World, per_run_copy: Agent
) -> None:
    buyer = access_of(world.outsider, world.workspace_b)
    with schema_context(world.workspace_b.schema_name):
        first = run_now(buyer, per_run_copy, "Sum up the week.")
        again = run_now(buyer, per_run_copy, "Sum up the week.")

    assert (first.status, again.status) == (AgentRun.Status.SUCCEEDED,) * 2
    assert (first.cache_hit, again.cache_hit) == (False, True)
    charges = RunCharge.objects.order_by("id")
    assert [(c.run_id, c.amount_cents) for c in charges] == [(first.pk, 25), (again.pk, 25)]


def test_a_used_up_monthly_budget_refuses_the_run_before_it_starts_and_raising_it_lets_it_run(
    world: World, per_run_copy: Agent, django_capture_on_commit_callbacks: Any
) -> None:
    buyer = access_of(world.outsider, world.workspace_b)
    with schema_context(world.workspace_b.schema_name):
        run_now(buyer, per_run_copy, "Sum up the week.")  # the answer the cache keeps
        budget = WorkspaceBudget.objects.create(monthly_cap_usd=Decimal("1.00"))
        _spent("1.00")

        # when a run is asked for, even one the cache could answer
        with (
            django_capture_on_commit_callbacks() as queued,
            pytest.raises(BudgetExceeded) as refused,
        ):
            agent_run_start(access=buyer, agent_id=per_run_copy.pk, input="Sum up the week.")

        # then 402 budget_exceeded, naming the budget and who raises it where; nothing queued
        assert (refused.value.status, refused.value.code) == (402, "budget_exceeded")
        assert "“Summariser” is charged per successful run" in refused.value.message
        assert "$1.00 monthly AI budget" in refused.value.message
        assert "An owner can raise the budget on the Usage page." in refused.value.message
        assert queued == []
        assert AgentRun.objects.count() == 1
        assert RunCharge.objects.count() == 1

        # and once the budget is raised, it runs (from the cache) and is charged
        budget.monthly_cap_usd = Decimal("5.00")
        budget.save()
        again = run_now(buyer, per_run_copy, "Sum up the week.")
    assert (again.status, again.cache_hit) == (AgentRun.Status.SUCCEEDED, True)
    assert RunCharge.objects.filter(run_id=again.pk, amount_cents=25).count() == 1


def test_a_used_up_plan_allowance_refuses_the_run_naming_the_plan(
    world: World, per_run_copy: Agent, settings: Any
) -> None:
    settings.BILLING_QUOTAS = True  # the Free plan includes $1.00 of AI spend, no overage
    buyer = access_of(world.outsider, world.workspace_b)
    with schema_context(world.workspace_b.schema_name):
        _spent("0.40")
        assert run_now(buyer, per_run_copy, "Sum up the week.").status == "succeeded"
        _spent("0.60")

        with pytest.raises(BudgetExceeded) as refused:
            agent_run_start(access=buyer, agent_id=per_run_copy.pk, input="Sum up the week.")

        assert refused.value.status == 402
        assert "used all $1.00 of AI spend its Free plan includes" in refused.value.message
        assert "upgrade the plan on the Billing page" in refused.value.message
        assert AgentRun.objects.count() == 1
    assert RunCharge.objects.count() == 1
