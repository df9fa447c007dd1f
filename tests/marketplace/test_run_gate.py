"""The run gate: a copy of a paid listing (agent or workflow, started by a member, a rerun or a
trigger) starts only with a runnable purchase, else 402 naming the listing; the refused run
does not exist and does not count against the plan. Free listings, ordinary agents and
workflows, and any listing while billing is off are never asked."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django_tenants.utils import schema_context

from agents.models import Agent, AgentRun
from agents.services import agent_create, agent_run_start
from billing.models import WorkspacePlan
from marketplace.models import Category, Listing, Publisher, Purchase
from marketplace.pricing import PurchaseRequired
from tests.fakes import FakeStripe
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import flow, make_workflow, transform
from workflows import runs
from workflows.models import WorkflowRun

pytestmark = pytest.mark.django_db


def _paid(
    publisher: Publisher, categories: dict[str, Category], kind: str, pricing: str = "monthly"
) -> Listing:
    listing = make_listing(
        publisher=publisher,
        category=categories["support"],
        title=f"Paid {kind}",
        kind=kind,
        pricing=pricing,
        price_cents=900,
        index=False,
    )
    assert listing.current_version is not None
    type(listing.current_version).objects.filter(pk=listing.current_version.pk).update(
        pricing=pricing, price_cents=900
    )
    listing.current_version.refresh_from_db()
    return listing


def _buy(world: World, listing: Listing, status: str = Purchase.Status.ACTIVE) -> Purchase:
    assert listing.current_version is not None
    return Purchase.objects.create(
        buyer=world.workspace_b,
        listing=listing,
        version=listing.current_version,
        publisher=listing.publisher,
        pricing=listing.pricing,
        unit_amount_cents=900,
        fee_percent=Decimal(20),
        status=status,
    )


def _agent_copy(world: World, listing: Listing) -> Agent:
    with schema_context(world.workspace_b.schema_name):
        agent = agent_create(
            access=access_of(world.outsider, world.workspace_b),
            name="Copy",
            model="offline:demo",
        )
        Agent.objects.filter(pk=agent.pk).update(listing_version_id=listing.current_version_id)
        agent.refresh_from_db()
        return agent


def _runs_used(world: World) -> int:
    return WorkspacePlan.objects.get(workspace=world.workspace_b).runs_used


def test_an_agent_copy_runs_only_with_a_runnable_purchase(
    world: World,
    fake_stripe: FakeStripe,
    publisher: Publisher,
    categories: dict[str, Category],
    settings: Any,
) -> None:
    settings.BILLING_QUOTAS = True
    listing = _paid(publisher, categories, "agent")
    agent = _agent_copy(world, listing)
    buyer = access_of(world.outsider, world.workspace_b)
    used = _runs_used(world)

    with schema_context(world.workspace_b.schema_name):
        with pytest.raises(PurchaseRequired) as refused:
            agent_run_start(access=buyer, agent_id=agent.pk, input="Hello")
        assert refused.value.status == 402
        assert "“Paid agent” is a paid listing ($9.00 a month)" in refused.value.message
        assert "buy it on its marketplace page" in refused.value.message
        assert not AgentRun.objects.exists()
    assert _runs_used(world) == used

    purchase = _buy(world, listing, Purchase.Status.CANCELING)  # runs until the period ends
    with schema_context(world.workspace_b.schema_name):
        assert agent_run_start(access=buyer, agent_id=agent.pk, input="Hello").pk

    Purchase.objects.filter(pk=purchase.pk).update(status=Purchase.Status.ENDED)
    with schema_context(world.workspace_b.schema_name), pytest.raises(PurchaseRequired):
        agent_run_start(access=buyer, agent_id=agent.pk, input="Hello")


def test_a_workflow_copy_is_refused_for_members_reruns_and_triggers_alike(
    world: World,
    fake_stripe: FakeStripe,
    publisher: Publisher,
    categories: dict[str, Category],
) -> None:
    listing = _paid(publisher, categories, "workflow", pricing="one_time")
    buyer = access_of(world.outsider, world.workspace_b)
    with schema_context(world.workspace_b.schema_name):
        workflow = make_workflow(flow([transform("a", 1)], []))
        workflow.listing_version_id = listing.current_version_id
        workflow.save(update_fields=["listing_version_id"])
        for access in (buyer, None):  # a member, and a trigger (no access)
            with pytest.raises(PurchaseRequired, match="Paid workflow"):
                runs.run_start(workflow=workflow, inputs={}, trigger="manual", access=access)
        assert not WorkflowRun.objects.exists()

    _buy(world, listing)
    with schema_context(world.workspace_b.schema_name):
        run = runs.run_start(workflow=workflow, inputs={}, trigger="manual", access=buyer)
    Purchase.objects.filter(listing=listing).update(status=Purchase.Status.REFUNDED)
    with schema_context(world.workspace_b.schema_name), pytest.raises(PurchaseRequired):
        runs.run_rerun(access=buyer, run=run)


def test_free_listings_and_billing_off_never_refuse(
    world: World,
    publisher: Publisher,
    categories: dict[str, Category],
    settings: Any,
) -> None:
    settings.STRIPE_TEST_SECRET_KEY = ""  # billing off: paid listings run free (and say so)
    paid = _paid(publisher, categories, "agent")
    buyer = access_of(world.outsider, world.workspace_b)
    agent = _agent_copy(world, paid)
    with schema_context(world.workspace_b.schema_name):
        assert agent_run_start(access=buyer, agent_id=agent.pk, input="Hello").pk
