"""Lost per-run charges: a run whose success committed but whose run_finished hook never ran
(the worker died in between, or the hook failed: hooks never raise) is found by the hourly
sweep and charged once, like the hook would have; a second sweep adds nothing, and failed,
cancelled, too recent and before-the-purchase runs are never charged by it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import Agent, AgentRun
from agents.services import agent_create, agent_run_start
from marketplace.models import Category, Listing, Publisher, Purchase, RunCharge
from marketplace.purchases import RECONCILE_GRACE, run_charges_reconcile
from tests.fakes import FakeStripe
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import flow, make_workflow, transform
from workflows import runs
from workflows.models import RunStatus, WorkflowRun

pytestmark = pytest.mark.django_db


def _per_run(publisher: Publisher, categories: dict[str, Category], kind: str) -> Listing:
    listing = make_listing(
        publisher=publisher,
        category=categories["support"],
        title=f"Per-run {kind}",
        kind=kind,
        pricing="per_run",
        price_cents=25,
        index=False,
    )
    assert listing.current_version is not None
    type(listing.current_version).objects.filter(pk=listing.current_version.pk).update(
        pricing="per_run", price_cents=25
    )
    return listing


def _buy(world: World, listing: Listing, activated_at: datetime) -> Purchase:
    assert listing.current_version is not None
    return Purchase.objects.create(
        buyer=world.workspace_b,
        listing=listing,
        version=listing.current_version,
        publisher=listing.publisher,
        pricing=Purchase.Pricing.PER_RUN,
        unit_amount_cents=25,
        fee_percent=Decimal(20),
        status=Purchase.Status.ACTIVE,
        activated_at=activated_at,
    )


def _agent_run(world: World, agent: Agent, status: str, finished_at: datetime) -> int:
    """A run of `agent` that ended as the executor ends it (status and finish committed), but
    without the run_finished hook that would have recorded its charge."""
    with schema_context(world.workspace_b.schema_name):
        run = agent_run_start(
            access=access_of(world.outsider, world.workspace_b), agent_id=agent.pk, input="Hi"
        )
        AgentRun.objects.filter(pk=run.pk).update(
            status=status, output="Done.", started_at=finished_at, finished_at=finished_at
        )
        return run.pk


def test_a_succeeded_run_whose_hook_was_lost_is_charged_once_by_the_sweep(
    world: World, fake_stripe: FakeStripe, publisher: Publisher, categories: dict[str, Category]
) -> None:
    now = timezone.now()
    listing = _per_run(publisher, categories, "agent")
    purchase = _buy(world, listing, activated_at=now - timedelta(days=2))
    with schema_context(world.workspace_b.schema_name):
        agent = agent_create(
            access=access_of(world.outsider, world.workspace_b), name="Copy", model="offline:demo"
        )
        Agent.objects.filter(pk=agent.pk).update(listing_version_id=listing.current_version_id)
    hour_ago = now - timedelta(hours=1)

    # given runs that ended without their hook: one succeeded, one failed, one cancelled, one
    # succeeded before the purchase was activated, one succeeded but charged by its hook
    lost = _agent_run(world, agent, AgentRun.Status.SUCCEEDED, hour_ago)
    _agent_run(world, agent, AgentRun.Status.FAILED, hour_ago)
    _agent_run(world, agent, AgentRun.Status.CANCELED, hour_ago)
    _agent_run(world, agent, AgentRun.Status.SUCCEEDED, now - timedelta(days=3))
    heard = _agent_run(world, agent, AgentRun.Status.SUCCEEDED, hour_ago)
    RunCharge.objects.create(purchase=purchase, run_id=heard, amount_cents=25)
    # and one that has just succeeded: its hook is given its time first
    recent = _agent_run(world, agent, AgentRun.Status.SUCCEEDED, now - RECONCILE_GRACE / 2)

    # when the sweep runs (twice, as overlapping or repeated beats would)
    assert run_charges_reconcile(now=now) == 1
    assert run_charges_reconcile(now=now) == 0

    # then the lost run is charged once, as the hook would have (the purchase's price; sent by
    # the flush with the key per-run-<purchase>-<run>), and nothing else
    charge = RunCharge.objects.get(run_id=lost)
    assert (charge.purchase_id, charge.amount_cents, charge.status) == (purchase.pk, 25, "pending")
    assert charge.idempotency_key == f"per-run-{purchase.pk}-{lost}"
    assert sorted(RunCharge.objects.values_list("run_id", flat=True)) == sorted([lost, heard])
    purchase.refresh_from_db()
    assert purchase.first_success_at is not None

    # and the recent one, once past the grace, is the next pass's
    assert run_charges_reconcile(now=now + RECONCILE_GRACE) == 1
    assert RunCharge.objects.filter(run_id=recent).count() == 1


def test_workflow_runs_are_swept_too_and_ended_purchases_and_billing_off_are_left_alone(
    world: World,
    fake_stripe: FakeStripe,
    publisher: Publisher,
    categories: dict[str, Category],
    settings: Any,
) -> None:
    now = timezone.now()
    listing = _per_run(publisher, categories, "workflow")
    purchase = _buy(world, listing, activated_at=now - timedelta(days=30))
    buyer = access_of(world.outsider, world.workspace_b)
    with schema_context(world.workspace_b.schema_name):
        workflow = make_workflow(flow([transform("a", 1)], []))
        workflow.listing_version_id = listing.current_version_id
        workflow.save(update_fields=["listing_version_id"])
        started = [
            runs.run_start(workflow=workflow, inputs={}, trigger="manual", access=buyer)
            for _ in range(3)
        ]
        ok, old, failed = (run.pk for run in started)
        ended = now - timedelta(hours=2)
        WorkflowRun.objects.filter(pk=ok).update(status=RunStatus.SUCCEEDED, finished_at=ended)
        # older than the sweep's window (7 days): left alone, the sweep stays cheap
        WorkflowRun.objects.filter(pk=old).update(
            status=RunStatus.SUCCEEDED, finished_at=now - timedelta(days=8)
        )
        WorkflowRun.objects.filter(pk=failed).update(status=RunStatus.FAILED, finished_at=ended)

    settings.STRIPE_TEST_SECRET_KEY = ""
    assert run_charges_reconcile(now=now) == 0  # billing off: nothing is charged

    settings.STRIPE_TEST_SECRET_KEY = "sk_test_" + "platform" * 3
    Purchase.objects.filter(pk=purchase.pk).update(status=Purchase.Status.REFUNDED)
    assert run_charges_reconcile(now=now) == 0

    Purchase.objects.filter(pk=purchase.pk).update(status=Purchase.Status.ACTIVE)
    assert run_charges_reconcile(now=now) == 1
    assert list(RunCharge.objects.values_list("run_id", flat=True)) == [ok]
