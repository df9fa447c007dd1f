"""Per-run listings: a card on file (Checkout in setup mode when missing), the price shown
before every run, one Stripe invoice item per successful run (failed runs are free, a replayed
webhook or flush adds nothing), collected with the buyer's next invoice, where each paid line
is one sale; Stripe down when a charge is sent → the charge waits in the outbox and is sent
on a later flush; a read-only workspace cannot run it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents.models import AgentRun
from billing.models import WorkspacePlan
from billing.quotas import QuotaExceeded
from billing.stripe_sync import plans_sync
from billing.subscriptions import checkout_start
from marketplace.models import Install, Purchase, RunCharge
from marketplace.purchases import purchase_start, run_charges_flush
from tests.helpers.purchases import URLS, Shop, pay, sale


def _subscribe_to_pro(shop: Shop) -> str:
    """B pays for the Pro plan: the subscription whose invoices collect per-run charges."""
    plans_sync(shop.client)
    url = checkout_start(
        workspace_id=shop.world.workspace_b.pk,
        plan_key="pro",
        interval="month",
        actor_id=shop.world.outsider.pk,
        **URLS,
    )
    pay(url)
    return str(WorkspacePlan.objects.get(workspace=shop.world.workspace_b).stripe_subscription_id)


def _items(shop: Shop) -> list[dict[str, object]]:
    return [o for o in shop.fake.objects.values() if o["object"] == "invoiceitem"]


def test_per_run_charges_equal_successful_runs_and_are_paid_with_the_next_invoice(
    shop: Shop,
) -> None:
    plan_subscription = _subscribe_to_pro(shop)
    listing = shop.listing("per_run", 25)

    # given B saves a card through Checkout in setup mode
    purchase = shop.buy(listing)
    (session,) = [
        r.body
        for r in shop.fake.requests
        if r.path == "/v1/checkout/sessions" and r.body["mode"] == "setup"
    ]
    assert session["setup_intent_data"]["metadata"]["purchase_id"] == str(purchase.pk)
    assert purchase.status == Purchase.Status.ACTIVE
    customer = shop.fake.get(
        WorkspacePlan.objects.get(workspace=shop.world.workspace_b).stripe_customer_id
    )
    assert customer["invoice_settings"]["default_payment_method"].startswith("pm_")
    agent = shop.copy(listing)

    # when it runs twice successfully and fails once
    runs = [shop.run(agent, "First text."), shop.run(agent, "Second text.")]
    shop.model.queue_error(400, message="bad request")
    failed = shop.run(agent, "Third text.")
    assert [r.status for r in runs] == [AgentRun.Status.SUCCEEDED] * 2
    assert failed.status == AgentRun.Status.FAILED

    # then two charges are sent, once however often the flush runs
    assert run_charges_flush(shop.client) == 2
    assert run_charges_flush(shop.client) == 0
    items = _items(shop)
    assert sorted(i["metadata"]["run_id"] for i in items) == sorted(str(r.pk) for r in runs)
    assert {i["amount"] for i in items} == {25}
    assert {i["metadata"]["purchase_id"] for i in items} == {str(purchase.pk)}
    keys = {
        r.headers["idempotency-key"] for r in shop.fake.requests if r.path == "/v1/invoiceitems"
    }
    assert keys == {f"per-run-{purchase.pk}-{r.pk}" for r in runs}

    # and the next invoice collects them: one sale per paid line, even when every webhook is
    # delivered three times in random order
    shop.fake.shuffle, shop.fake.deliver_times = True, 3
    invoice = shop.fake.close_period(plan_subscription)
    assert invoice is not None
    lines = [line for line in invoice["lines"]["data"] if line["metadata"].get("purchase_id")]
    assert len(lines) == 2
    assert [sale(line["id"]).gross_cents for line in lines] == [25, 25]
    assert {sale(line["id"]).purchase_id for line in lines} == {purchase.pk}
    assert RunCharge.objects.filter(purchase=purchase, status="sent").count() == 2


def test_a_card_on_file_activates_a_per_run_purchase_without_checkout(shop: Shop) -> None:
    first = shop.buy(shop.listing("per_run", 25, title="First"))
    assert first.status == Purchase.Status.ACTIVE
    second = shop.listing("per_run", 10, title="Second")

    started = purchase_start(access=shop.buyer, listing=second, **URLS)

    assert started.checkout_url is None
    assert started.purchase.status == Purchase.Status.ACTIVE
    assert Install.objects.filter(listing=second, workspace=shop.world.workspace_b).exists()


def test_stripe_down_when_a_charge_is_sent_keeps_it_in_the_outbox_until_a_later_flush(
    shop: Shop,
) -> None:
    listing = shop.listing("per_run", 25)
    shop.buy(listing)
    run = shop.run(shop.copy(listing))
    shop.fake.fail_next("/v1/invoiceitems", status=500, times=3)  # and the SDK's retries

    assert run_charges_flush(shop.client) == 0

    charge = RunCharge.objects.get(run_id=run.pk)
    assert (charge.status, charge.attempts) == (RunCharge.Status.PENDING, 1)
    assert charge.next_attempt_at > timezone.now()
    assert "500" in charge.last_error
    assert _items(shop) == []
    RunCharge.objects.filter(pk=charge.pk).update(next_attempt_at=timezone.now())
    assert run_charges_flush(shop.client) == 1
    (item,) = _items(shop)
    assert item["metadata"] == {"purchase_id": str(charge.purchase_id), "run_id": str(run.pk)}


def test_the_run_form_shows_the_price_and_a_read_only_workspace_cannot_run(shop: Shop) -> None:
    listing = shop.listing("per_run", 25)
    shop.buy(listing)
    agent = shop.copy(listing)
    page = Client()
    page.force_login(shop.world.outsider)
    url = reverse(
        "agent_detail",
        kwargs={"workspace_slug": shop.world.workspace_b.slug, "agent_id": agent.pk},
    )
    body = page.get(url).content.decode()
    assert "$0.25 per successful run" in body

    WorkspacePlan.objects.filter(workspace=shop.world.workspace_b).update(
        status=WorkspacePlan.Status.READ_ONLY,
        grace_ends_at=timezone.now() - timedelta(days=1),
    )
    with pytest.raises(QuotaExceeded):
        shop.run(agent)
    assert not RunCharge.objects.exists()
