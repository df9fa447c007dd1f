"""Per-run charges of a workspace without a subscription (the Free plan) go on a standalone
invoice when they are due (the oldest is RUN_CHARGE_INVOICE_DAYS old or they add up to
RUN_CHARGE_INVOICE_MIN_CENTS), once however often, concurrently or interrupted the task runs;
its payment is the creator's sale. A workspace with a subscription is left to its invoice."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import stripe
from django.db import connection
from django.utils import timezone

from billing.models import WorkspacePlan
from billing.stripe_sync import plans_sync
from billing.subscriptions import checkout_start
from marketplace import earnings
from marketplace.models import Listing, Purchase, RunCharge
from marketplace.pricing import PurchaseRequired
from marketplace.purchases import run_charges_flush, run_charges_invoice
from tests.helpers.purchases import KEY, URLS, Shop, pay, sale


def _charged(shop: Shop, runs: int, *, cents: int = 25) -> tuple[Listing, Purchase]:
    """B buys a per-run listing (its card saved through Checkout) and runs it `runs` times
    successfully; the charges are sent to Stripe as pending invoice items."""
    listing = shop.listing("per_run", cents)
    purchase = shop.buy(listing)
    agent = shop.copy(listing)
    for n in range(runs):
        shop.run(agent, f"Text {n}.")
    assert run_charges_flush(shop.client) == runs
    return listing, purchase


def _invoice_posts(shop: Shop) -> list[Any]:
    return [r for r in shop.fake.requests if r.method == "POST" and r.path == "/v1/invoices"]


def _invoices(shop: Shop) -> list[dict[str, Any]]:
    return [o for o in shop.fake.objects.values() if o["object"] == "invoice"]


def test_a_free_workspaces_charges_are_invoiced_once_and_paid_to_the_creator(
    shop: Shop, settings: Any
) -> None:
    settings.RUN_CHARGE_INVOICE_MIN_CENTS = 75
    _, purchase = _charged(shop, 3)
    customer = WorkspacePlan.objects.get(workspace=shop.world.workspace_b).stripe_customer_id
    assert not WorkspacePlan.objects.get(workspace=shop.world.workspace_b).stripe_subscription_id

    # when the task runs twice
    assert run_charges_invoice(shop.client) == 1
    assert run_charges_invoice(shop.client) == 0

    # then one invoice took every charge, amounts = successful runs x price
    (post,) = _invoice_posts(shop)
    charges = list(RunCharge.objects.filter(purchase=purchase).order_by("id"))
    ws = shop.world.workspace_b.pk
    assert post.body["customer"] == customer
    assert post.body["pending_invoice_items_behavior"] == "include"
    assert post.body["collection_method"] == "charge_automatically"
    assert post.body["auto_advance"] == "true"
    assert post.body["metadata"]["workspace_id"] == str(ws)
    assert post.headers["idempotency-key"] == f"run-charges-{ws}-{charges[-1].pk}"
    (invoice,) = _invoices(shop)
    assert invoice["status"] == "open"
    assert invoice["subscription"] is None
    assert invoice["total"] == 3 * 25
    assert sorted(line["metadata"]["run_id"] for line in invoice["lines"]["data"]) == sorted(
        str(c.run_id) for c in charges
    )
    assert {c.stripe_invoice_id for c in charges} == {invoice["id"]}
    assert {c.stripe_invoice_line_id for c in charges} == {
        line["id"] for line in invoice["lines"]["data"]
    }
    types = [e["type"] for e in shop.fake.events if e["data"]["object"]["id"] == invoice["id"]]
    assert types == ["invoice.created", "invoice.finalized"]

    # when Stripe collects it: each line is the creator's sale (25, less the 20 % fee)
    shop.fake.collect_invoice(invoice["id"])
    for line in invoice["lines"]["data"]:
        assert sale(line["id"]).gross_cents == 25
        assert sale(line["id"]).purchase_id == purchase.pk
    assert earnings.balances(publisher_id=purchase.publisher_id)["pending"] == 3 * 20
    assert run_charges_invoice(shop.client) == 0
    assert len(_invoices(shop)) == 1


def test_charges_wait_for_the_age_or_the_amount_that_makes_them_due(
    shop: Shop, settings: Any
) -> None:
    settings.RUN_CHARGE_INVOICE_MIN_CENTS = 2000
    settings.RUN_CHARGE_INVOICE_DAYS = 30
    _charged(shop, 2)

    assert run_charges_invoice(shop.client) == 0  # 0.50 USD, a minute old
    assert run_charges_invoice(shop.client, now=timezone.now() + timedelta(days=29)) == 0
    assert _invoice_posts(shop) == []

    assert run_charges_invoice(shop.client, now=timezone.now() + timedelta(days=31)) == 1
    (invoice,) = _invoices(shop)
    assert invoice["total"] == 50


def test_two_runs_at_once_make_one_invoice(shop: Shop, settings: Any) -> None:
    settings.RUN_CHARGE_INVOICE_MIN_CENTS = 1
    _, purchase = _charged(shop, 2)
    # the first run is held once Stripe made its invoice (its answer not yet back)
    shop.fake.hold_after("/v1/invoices", 1)  # the list, then the create
    made: list[int] = []

    def first() -> None:
        try:
            made.append(run_charges_invoice(shop.client))
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert shop.fake.holding.wait(timeout=30)

    assert run_charges_invoice(shop.client) == 0  # the workspace is being invoiced: skipped
    shop.fake.release()
    thread.join(timeout=30)

    assert made == [1]
    (invoice,) = _invoices(shop)
    assert len(_invoice_posts(shop)) == 1
    assert set(
        RunCharge.objects.filter(purchase=purchase).values_list("stripe_invoice_id", flat=True)
    ) == {invoice["id"]}


def test_a_run_stopped_after_stripe_made_the_invoice_is_finished_by_the_next(
    shop: Shop, settings: Any
) -> None:
    settings.RUN_CHARGE_INVOICE_MIN_CENTS = 1
    _, purchase = _charged(shop, 2)
    impatient = stripe.StripeClient(
        KEY,
        base_addresses={"api": shop.fake.base_url},
        max_network_retries=0,
        http_client=stripe.new_default_http_client(timeout=1),
    )
    shop.fake.hold_after("/v1/invoices", 1)

    # the run dies waiting for Stripe's answer: Stripe has the invoice (a draft), we have nothing
    assert run_charges_invoice(impatient) == 0
    shop.fake.release()
    (draft,) = _invoices(shop)
    assert draft["status"] == "draft"
    assert not RunCharge.objects.exclude(stripe_invoice_id="").exists()

    # a charge more meanwhile: the next run finishes that invoice, then invoices the new one
    shop.run(shop.copy(purchase.listing), "One more.")
    assert run_charges_flush(shop.client) == 1
    assert run_charges_invoice(shop.client) == 1

    first, second = sorted(_invoices(shop), key=lambda i: i["created"])
    assert first["id"] == draft["id"]
    assert first["status"] == "open"
    assert len(first["lines"]["data"]) == 2
    assert len(second["lines"]["data"]) == 1
    by_invoice = list(
        RunCharge.objects.filter(purchase=purchase)
        .order_by("id")
        .values_list("stripe_invoice_id", flat=True)
    )
    assert by_invoice == [first["id"], first["id"], second["id"]]


def test_a_failed_payment_records_no_sale_and_paying_later_does_once(
    shop: Shop, settings: Any
) -> None:
    settings.RUN_CHARGE_INVOICE_MIN_CENTS = 1
    _, purchase = _charged(shop, 2)
    assert run_charges_invoice(shop.client) == 1
    (invoice,) = _invoices(shop)

    shop.fake.collect_invoice(invoice["id"], fail=True)  # the card is declined

    assert shop.fake.events[-1]["type"] == "invoice.payment_failed"
    assert all(sale(line["id"]) is None for line in invoice["lines"]["data"])
    plan = WorkspacePlan.objects.get(workspace=shop.world.workspace_b)
    assert plan.status == WorkspacePlan.Status.ACTIVE  # the plan is not what failed
    assert run_charges_invoice(shop.client) == 0  # the charges stay on that invoice

    shop.client.v1.invoices.pay(invoice["id"])  # Stripe's retry, or the buyer, pays it
    shop.fake.flush_events()

    assert [sale(line["id"]).gross_cents for line in invoice["lines"]["data"]] == [25, 25]
    assert earnings.balances(publisher_id=purchase.publisher_id)["pending"] == 2 * 20


def test_a_workspace_with_a_subscription_is_left_to_its_invoice(shop: Shop, settings: Any) -> None:
    settings.RUN_CHARGE_INVOICE_MIN_CENTS = 1
    plans_sync(shop.client)
    pay(
        checkout_start(
            workspace_id=shop.world.workspace_b.pk,
            plan_key="pro",
            interval="month",
            actor_id=shop.world.outsider.pk,
            **URLS,
        )
    )
    subscription = WorkspacePlan.objects.get(
        workspace=shop.world.workspace_b
    ).stripe_subscription_id
    assert subscription
    _, purchase = _charged(shop, 2)

    assert run_charges_invoice(shop.client, now=timezone.now() + timedelta(days=60)) == 0
    assert _invoice_posts(shop) == []

    invoice = shop.fake.close_period(subscription)
    assert invoice is not None
    charges = RunCharge.objects.filter(purchase=purchase)
    assert set(charges.values_list("stripe_invoice_id", flat=True)) == {invoice["id"]}
    lines = [line for line in invoice["lines"]["data"] if line["metadata"].get("run_id")]
    assert [sale(line["id"]).gross_cents for line in lines] == [25, 25]


def test_an_unpaid_invoice_of_run_charges_stops_per_run_listings_after_the_grace(
    shop: Shop, settings: Any
) -> None:
    """A Free workspace whose card declines its per-run invoice keeps running through the
    grace period; after it, its per-run listings are refused (402, naming the invoice and how
    to pay); paid, they run again."""
    settings.RUN_CHARGE_INVOICE_MIN_CENTS = 1
    listing, purchase = _charged(shop, 2)
    agent = shop.copy(listing)
    assert run_charges_invoice(shop.client) == 1
    (invoice,) = _invoices(shop)
    shop.fake.collect_invoice(invoice["id"], fail=True)  # invoice.payment_failed processed
    charges = RunCharge.objects.filter(purchase=purchase)
    assert all(c.unpaid_since is not None for c in charges)

    assert shop.run(agent, "Within the grace.").status == "succeeded"

    settings.BILLING_GRACE_DAYS = 0
    with pytest.raises(PurchaseRequired, match=r"unpaid since .* Billing page"):
        shop.run(agent, "After the grace.")

    shop.client.v1.invoices.pay(invoice["id"])  # the buyer fixed the card
    shop.fake.flush_events()
    assert all(c.unpaid_since is None for c in charges.all())
    assert shop.run(agent, "Paid again.").status == "succeeded"
