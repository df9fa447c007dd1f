"""Refunds of sales paid on an invoice (a monthly purchase's invoice, a per-run line) from the
admin: refunded against the payment that paid the invoice, at most the sale's gross, with the
same reversal / clawback / ledger rules as a one-time sale's refund."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents.models import AgentRun
from billing.models import WorkspacePlan
from billing.stripe_sync import plans_sync
from billing.subscriptions import checkout_start
from core.exceptions import ServiceUnavailable
from marketplace import earnings
from marketplace.models import LedgerEntry, Payout, Purchase, Refund
from marketplace.payouts import payouts_run
from marketplace.purchases import purchase_cancel, run_charges_flush, run_charges_invoice
from tenants.models import AuditEvent
from tests.fakes.stripe_api import StripeError
from tests.helpers.purchases import URLS, Shop, pay, sale

LATER = timedelta(days=8)  # past the hold


def _refund(purchase: Purchase, sale_ref: str, amount: int) -> Refund:
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref=sale_ref, amount_cents=amount, reason="asked", by=None
    )
    return earnings.refund_complete(refund_id=refund.pk)


def _paid_by(shop: Shop, invoice_id: str) -> dict[str, Any]:
    (payment,) = [
        o
        for o in shop.fake.objects.values()
        if o["object"] == "invoice_payment" and o["invoice"] == invoice_id
    ]
    return shop.fake.get(payment["payment"]["payment_intent"], "payment_intent")


def _ledger_matches_balances(publisher_id: int) -> None:
    balances = earnings.balances(publisher_id=publisher_id)
    rows = LedgerEntry.objects.filter(publisher_id=publisher_id)
    for bucket, cents in balances.items():
        assert (rows.filter(bucket=bucket).aggregate(s=Sum("amount_cents"))["s"] or 0) == cents
    total = rows.aggregate(gross=Sum("gross_cents"), fee=Sum("fee_cents"))
    assert sum(balances.values()) == total["gross"] - total["fee"]


def _pay_creators(now: Any) -> None:
    earnings.earnings_release(now=now)
    payouts_run(now=now)


def test_a_monthly_sale_is_refunded_in_full_against_its_invoices_payment(
    shop: Shop, settings: Any
) -> None:
    purchase = shop.buy(shop.listing("monthly", 900))
    invoice_id = str(shop.fake.get(purchase.stripe_subscription_id)["latest_invoice"])
    assert sale(invoice_id).gross_cents == 900
    intent = _paid_by(shop, invoice_id)

    refund = _refund(purchase, invoice_id, 900)

    assert refund.status == Refund.Status.DONE
    (call,) = [r for r in shop.fake.requests if r.path == "/v1/refunds"]
    assert call.body["payment_intent"] == intent["id"]
    assert call.body["amount"] == "900"
    assert shop.fake.get(intent["latest_charge"])["amount_refunded"] == 900
    assert earnings.balances(publisher_id=purchase.publisher_id)["pending"] == 0
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.REFUNDED
    _ledger_matches_balances(purchase.publisher_id)


def test_a_monthly_sale_refunded_after_payout_reverses_the_transfer(
    shop: Shop, settings: Any
) -> None:
    settings.MARKETPLACE_MIN_PAYOUT_CENTS = 1
    purchase = shop.buy(shop.listing("monthly", 900))
    invoice_id = str(shop.fake.get(purchase.stripe_subscription_id)["latest_invoice"])
    _pay_creators(timezone.now() + LATER)
    (payout,) = Payout.objects.all()
    assert payout.amount_cents == 720

    refund = _refund(purchase, invoice_id, 900)

    reversal = shop.fake.get(refund.stripe_reversal_id)
    assert (reversal["transfer"], reversal["amount"]) == (payout.stripe_transfer_id, 720)
    assert earnings.balances(publisher_id=purchase.publisher_id) == {
        "pending": 0,
        "available": 0,
        "frozen": 0,
        "paid": 0,
    }
    _ledger_matches_balances(purchase.publisher_id)


def _per_run_sales(shop: Shop, settings: Any, runs: int) -> tuple[Purchase, list[str]]:
    """B (Free plan) runs a $0.25 per-run listing `runs` times; the standalone invoice is
    paid: one sale per line."""
    settings.RUN_CHARGE_INVOICE_MIN_CENTS = 1
    listing = shop.listing("per_run", 25)
    purchase = shop.buy(listing)
    agent = shop.copy(listing)
    for n in range(runs):
        shop.run(agent, f"Text {n}.")
    run_charges_flush(shop.client)
    assert run_charges_invoice(shop.client) == 1
    (invoice,) = [o for o in shop.fake.objects.values() if o["object"] == "invoice"]
    shop.fake.collect_invoice(invoice["id"])
    return purchase, [line["id"] for line in invoice["lines"]["data"]]


def test_a_per_run_sale_is_refunded_partly_before_and_after_payout(
    shop: Shop, settings: Any
) -> None:
    settings.MARKETPLACE_MIN_PAYOUT_CENTS = 1
    purchase, lines = _per_run_sales(shop, settings, 2)
    invoice_id = shop.fake.get(
        next(o["invoice"] for o in shop.fake.objects.values() if o["object"] == "invoiceitem")
    )["id"]
    intent = _paid_by(shop, invoice_id)

    # before the payout: 10 of the first run's 25 back; 8 of the creator's 20 leave pending
    first = _refund(purchase, lines[0], 10)
    (call,) = [r for r in shop.fake.requests if r.path == "/v1/refunds"]
    assert call.body["payment_intent"] == intent["id"]
    assert first.sale_ref == lines[0]
    assert earnings.balances(publisher_id=purchase.publisher_id)["pending"] == 40 - 8
    assert earnings.refundable_cents(sale_ref=lines[0]) == 15

    # after the payout: 15 of the second run's 25; 12 reversed from the transfer
    _pay_creators(timezone.now() + LATER)
    (payout,) = Payout.objects.all()
    assert payout.amount_cents == 32
    second = _refund(purchase, lines[1], 15)
    assert shop.fake.get(second.stripe_reversal_id)["amount"] == 12
    assert earnings.balances(publisher_id=purchase.publisher_id)["paid"] == 32 - 12
    assert shop.fake.get(intent["latest_charge"])["amount_refunded"] == 25
    purchase.refresh_from_db()
    assert purchase.runnable  # 25 of 50 is still the buyer's
    _ledger_matches_balances(purchase.publisher_id)


def test_a_per_run_sale_on_a_plan_invoice_is_capped_at_its_own_gross(
    shop: Shop, settings: Any
) -> None:
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
    plan = WorkspacePlan.objects.get(workspace=shop.world.workspace_b)
    listing = shop.listing("per_run", 25)
    purchase = shop.buy(listing)
    shop.run(shop.copy(listing))
    run_charges_flush(shop.client)
    invoice = shop.fake.close_period(plan.stripe_subscription_id)
    assert invoice is not None
    assert invoice["total"] > 25  # the plan's own lines too
    (line,) = [line for line in invoice["lines"]["data"] if line["metadata"].get("run_id")]

    too_much = Client()
    too_much.force_login(shop.staff)
    answer = too_much.post(
        reverse("admin:marketplace_refund_add"),
        {"purchase": purchase.pk, "sale_ref": line["id"], "amount": "0.26", "reason": "x"},
    )
    assert answer.status_code == 200
    assert "0.25 USD (what is left to refund of this sale)" in answer.content.decode()

    refund = _refund(purchase, line["id"], 25)
    assert (
        shop.fake.get(refund.stripe_refund_id)["payment_intent"]
        == _paid_by(shop, invoice["id"])["id"]
    )
    assert earnings.balances(publisher_id=purchase.publisher_id)["pending"] == 0
    _ledger_matches_balances(purchase.publisher_id)


def test_the_admin_says_which_field_when_an_invoice_sale_cannot_be_refunded(
    shop: Shop, settings: Any
) -> None:
    settings.RUN_CHARGE_INVOICE_MIN_CENTS = 1
    listing = shop.listing("per_run", 25)
    purchase = shop.buy(listing)
    shop.run(shop.copy(listing))
    run_charges_flush(shop.client)
    run_charges_invoice(shop.client)
    (invoice,) = [o for o in shop.fake.objects.values() if o["object"] == "invoice"]
    # paid outside Stripe: there is no card payment to refund
    shop.client.v1.invoices.pay(invoice["id"], params={"paid_out_of_band": True})
    shop.fake.flush_events()
    (line,) = invoice["lines"]["data"]
    assert sale(line["id"]).gross_cents == 25

    staff = Client()
    staff.force_login(shop.staff)
    answer = staff.post(
        reverse("admin:marketplace_refund_add"),
        {"purchase": purchase.pk, "sale_ref": line["id"], "amount": "0.25", "reason": "x"},
    )

    assert answer.status_code == 200
    form = answer.context["adminform"].form
    assert "credit note in the Stripe dashboard" in " ".join(form.errors["sale_ref"])
    assert not Refund.objects.exists()
    assert not [r for r in shop.fake.requests if r.path == "/v1/refunds"]


def test_a_monthly_purchase_refunded_in_full_stops_billing_and_the_buyer_sees_it(
    shop: Shop, settings: Any
) -> None:
    purchase = shop.buy(shop.listing("monthly", 900))
    buyer = shop.world.workspace_b
    paid = AuditEvent.objects.get(action="money.purchase_paid", workspace=buyer)
    assert paid.target_id == str(purchase.pk)
    subscription_id = purchase.stripe_subscription_id
    invoice_id = str(shop.fake.get(subscription_id)["latest_invoice"])

    refund = _refund(purchase, invoice_id, 900)

    assert refund.status == Refund.Status.DONE
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.REFUNDED
    # its subscription is canceled at Stripe: the next month bills nothing
    assert shop.fake.get(subscription_id)["status"] == "canceled"
    (cancel,) = [
        r
        for r in shop.fake.requests
        if r.method == "DELETE" and r.path == f"/v1/subscriptions/{subscription_id}"
    ]
    assert cancel.headers["idempotency-key"] == f"purchase-{purchase.pk}-refund-cancel"
    with pytest.raises(StripeError, match="canceled"):
        shop.fake.close_period(subscription_id)
    assert LedgerEntry.objects.filter(purchase=purchase, kind="sale").count() == 1
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.REFUNDED
    refunded = AuditEvent.objects.get(action="money.purchase_refunded")
    assert (refunded.workspace, refunded.target_id) == (buyer, str(purchase.pk))


def test_a_failed_subscription_cancel_keeps_the_refund_pending_and_retry_finishes_it(
    shop: Shop, settings: Any
) -> None:
    purchase = shop.buy(shop.listing("monthly", 900))
    subscription_id = purchase.stripe_subscription_id
    invoice_id = str(shop.fake.get(subscription_id)["latest_invoice"])
    intent = _paid_by(shop, invoice_id)
    shop.fake.fail_next(f"/v1/subscriptions/{subscription_id}", status=500, times=3)
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref=invoice_id, amount_cents=900, reason="x", by=None
    )

    with pytest.raises(ServiceUnavailable, match=f"did not cancel subscription {subscription_id}"):
        earnings.refund_complete(refund_id=refund.pk)

    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING
    assert "Retry" in refund.last_error
    assert shop.fake.get(subscription_id)["status"] == "active"
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.ACTIVE  # not refunded until canceled
    assert not LedgerEntry.objects.filter(refund=refund).exists()

    assert earnings.refund_complete(refund_id=refund.pk).status == Refund.Status.DONE
    assert shop.fake.get(subscription_id)["status"] == "canceled"
    assert shop.fake.get(intent["latest_charge"])["amount_refunded"] == 900
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.REFUNDED


def test_refunding_one_per_run_charge_keeps_the_purchase_running(shop: Shop, settings: Any) -> None:
    purchase, lines = _per_run_sales(shop, settings, 1)

    refund = _refund(purchase, lines[0], 25)

    assert refund.status == Refund.Status.DONE
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.ACTIVE
    assert purchase.runnable
    assert not AuditEvent.objects.filter(action="money.purchase_refunded").exists()
    run = shop.run(shop.copy(purchase.listing), "Again.")
    assert run.status == AgentRun.Status.SUCCEEDED


def test_the_buyer_workspace_audits_a_cancel(shop: Shop, settings: Any) -> None:
    purchase = shop.buy(shop.listing("monthly", 900))
    purchase_cancel(access=shop.buyer, purchase_id=purchase.pk)
    event = AuditEvent.objects.get(action="money.purchase_canceled")
    assert (event.workspace, event.actor) == (shop.world.workspace_b, shop.world.outsider)
    assert event.metadata["status"] == Purchase.Status.CANCELING
