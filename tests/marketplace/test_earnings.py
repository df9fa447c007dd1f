"""Creators' earnings after a sale: pending for the hold, then available, then paid by one
transfer; the ledger is append-only (model and database) and its rows are the balances, for any
sequence of sales, holds ending, payouts, refunds and disputes (hypothesis)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from django.db.utils import DatabaseError
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from marketplace import earnings, fees
from marketplace.earnings import BUCKETS, Bucket
from marketplace.models import LedgerEntry, LedgerImmutable, Payout
from marketplace.payouts import payouts_run
from tenants.models import AuditEvent
from tests.fakes import FakeStripe
from tests.helpers.money import make_purchase, make_shop
from tests.helpers.personas import World

START = datetime.fromisoformat("2026-03-02T09:00:00+00:00")


def test_a_sale_is_pending_for_the_hold_then_available_then_paid_by_one_transfer(
    world: World, fake_stripe: FakeStripe, settings: Any
) -> None:
    settings.MARKETPLACE_EARNINGS_HOLD_DAYS = 7
    settings.MARKETPLACE_MIN_PAYOUT_CENTS = 1000
    shop = make_shop(workspace=world.workspace_a)
    purchase = make_purchase(shop, buyer=world.workspace_b, amount=2500, fee="20")
    charge = fake_stripe.add_charge(2500, "usd")

    assert earnings.sale_record(
        purchase=purchase,
        gross_cents=2500,
        stripe_ref=charge["id"],
        occurred_at=START,
        stripe_fee_cents=103,
    )
    # the same sale again (a webhook delivered twice) records nothing
    assert not earnings.sale_record(
        purchase=purchase, gross_cents=2500, stripe_ref=charge["id"], occurred_at=START
    )
    (sale,) = LedgerEntry.objects.filter(publisher=shop.publisher)
    assert (sale.gross_cents, sale.fee_cents, sale.amount_cents, sale.stripe_fee_cents) == (
        2500,
        500,
        2000,
        103,
    )
    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 2000,
        "available": 0,
        "frozen": 0,
        "paid": 0,
    }

    # a day before the hold ends nothing moves; nothing is paid while nothing is available
    assert earnings.earnings_release(now=START + timedelta(days=6)) == 0
    assert payouts_run(now=START + timedelta(days=6)).sent == 0
    assert earnings.earnings_release(now=START + timedelta(days=7)) == 1
    assert earnings.earnings_release(now=START + timedelta(days=7)) == 0
    assert earnings.balances(publisher_id=shop.publisher.pk)["available"] == 2000

    report = payouts_run(now=START + timedelta(days=7, hours=1))
    assert (report.booked, report.sent, report.failed) == (1, 1, 0)
    assert payouts_run(now=START + timedelta(days=7, hours=2)).sent == 0  # same period: done
    (payout,) = Payout.objects.all()
    assert payout.status == Payout.Status.PAID
    assert payout.amount_cents == 2000
    assert payout.period == "2026-03-09"
    transfers = [r for r in fake_stripe.requests if r.path == "/v1/transfers"]
    assert len(transfers) == 1
    assert transfers[0].headers["idempotency-key"] == f"payout-{shop.creator.pk}-2026-03-09-usd"
    assert fake_stripe.get(payout.stripe_transfer_id)["destination"] == "acct_creator000001"
    assert fake_stripe.balance_of("acct_creator000001") == 2000
    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 0,
        "available": 0,
        "frozen": 0,
        "paid": 2000,
    }
    actions = list(
        AuditEvent.objects.filter(workspace=world.workspace_a, action__startswith="money.")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "money.sale_recorded",
        "money.earnings_available",
        "money.payout_created",
        "money.payout_sent",
    ]


def test_below_the_minimum_or_not_onboarded_nothing_is_paid(
    world: World, fake_stripe: FakeStripe, settings: Any
) -> None:
    settings.MARKETPLACE_MIN_PAYOUT_CENTS = 5000
    shop = make_shop(workspace=world.workspace_a)
    purchase = make_purchase(shop, buyer=world.workspace_b)
    earnings.sale_record(purchase=purchase, gross_cents=2500, stripe_ref="ch_a", occurred_at=START)
    earnings.earnings_release(now=START + timedelta(days=30))
    assert payouts_run(now=START + timedelta(days=30)).booked == 0
    settings.MARKETPLACE_MIN_PAYOUT_CENTS = 1000
    shop.creator.payouts_enabled = False
    shop.creator.save()
    assert payouts_run(now=START + timedelta(days=30)).booked == 0
    assert not Payout.objects.exists()


def test_ledger_rows_are_never_changed_or_deleted(world: World) -> None:
    shop = make_shop(workspace=world.workspace_a)
    purchase = make_purchase(shop, buyer=world.workspace_b)
    earnings.sale_record(purchase=purchase, gross_cents=900, stripe_ref="ch_x", occurred_at=START)
    entry = LedgerEntry.objects.get()
    entry.amount_cents = 1
    with pytest.raises(LedgerImmutable):
        entry.save()
    with pytest.raises(LedgerImmutable):
        entry.delete()
    # below the model too: the database refuses UPDATE and DELETE (queryset or raw SQL)
    for statement in (
        lambda: LedgerEntry.objects.filter(pk=entry.pk).update(amount_cents=1),
        lambda: LedgerEntry.objects.filter(pk=entry.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            statement()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE marketplace_ledgerentry SET amount_cents = 0")
    assert LedgerEntry.objects.get().amount_cents == 720


# --- Property: the rows are the balances, whatever happens


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("sale"), st.integers(min_value=1, max_value=50_000)),
        st.tuples(st.just("days"), st.integers(min_value=1, max_value=10)),
        st.tuples(st.just("payout"), st.just(0)),
        st.tuples(st.just("bank"), st.just(0)),
        st.tuples(st.just("refund"), st.integers(min_value=1, max_value=100)),
        st.tuples(st.just("dispute"), st.integers(min_value=0, max_value=2)),
    ),
    min_size=1,
    max_size=14,
)


@hsettings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=OPERATIONS, percent=st.sampled_from(["0", "12.5", "20", "33.33", "100"]))
# a dispute lost after a later sale: it is the disputed sale's money that goes back
@example(operations=[("sale", 2), ("dispute", 0), ("sale", 1), ("dispute", 2)], percent="0")
def test_entries_sum_to_each_balance_and_to_net_earned_less_refunds(
    world: World, fake_stripe: FakeStripe, settings: Any, operations: list[Any], percent: str
) -> None:
    settings.MARKETPLACE_MIN_PAYOUT_CENTS = 1
    with transaction.atomic():
        account = fake_stripe.new_id("acct")
        shop = make_shop(workspace=world.workspace_a, account=account)
        # one purchase paid many times (a monthly one): each sale is its own charge
        purchase = make_purchase(shop, buyer=world.workspace_b, fee=percent)
        now = START
        sales: list[tuple[str, int]] = []  # (charge id, gross)
        refunded: dict[str, int] = {}
        disputes: list[tuple[str, str, int]] = []  # (dispute id, its sale's charge, gross)
        for op, value in operations:
            if op == "sale":
                charge = fake_stripe.add_charge(value, "usd")
                earnings.sale_record(
                    purchase=purchase, gross_cents=value, stripe_ref=charge["id"], occurred_at=now
                )
                sales.append((charge["id"], value))
            elif op == "days":
                now += timedelta(days=value)
                earnings.earnings_release(now=now)
            elif op == "payout":
                now += timedelta(days=1)
                payouts_run(now=now)
            elif op == "bank":
                fake_stripe.pay_out(account)
            elif op == "refund" and sales:
                ref, gross = sales[value % len(sales)]
                left = earnings.refundable_cents(sale_ref=ref)
                if left and not fake_stripe.get(ref)["disputed"]:
                    amount = max(1, left * value // 100)
                    refund = earnings.refund_create(
                        purchase_id=purchase.pk,
                        sale_ref=ref,
                        amount_cents=amount,
                        reason="property",
                        by=None,
                    )
                    earnings.refund_complete(refund_id=refund.pk, now=now)
                    refunded[ref] = refunded.get(ref, 0) + amount
            elif op == "dispute" and sales:
                if value == 0 and not fake_stripe.get(sales[-1][0])["disputed"]:
                    ref, gross = sales[-1]  # the latest sale is disputed
                    disputes.append((fake_stripe.dispute(ref)["id"], ref, gross))
                    earnings.dispute_sync(dispute=fake_stripe.get(disputes[-1][0]), now=now)
                elif (
                    value
                    and disputes
                    and fake_stripe.get(disputes[-1][0])["status"] == "needs_response"
                ):
                    dispute_id, ref, gross = disputes[-1]  # a later sale may have come since
                    dispute = fake_stripe.close_dispute(dispute_id, won=value == 1)
                    if dispute["status"] == "lost":  # the whole charge went back to the buyer
                        refunded[ref] = gross
                    earnings.dispute_sync(dispute=fake_stripe.get(dispute_id), now=now)

        balances = earnings.balances(publisher_id=shop.publisher.pk)
        rows = LedgerEntry.objects.filter(publisher=shop.publisher)
        for bucket in BUCKETS:
            summed = rows.filter(bucket=bucket).aggregate(t=Sum("amount_cents"))["t"] or 0
            assert balances[bucket] == summed
        # pending + available + frozen + paid == net earned less what went back to buyers
        expected = sum(
            fees.split(gross, Decimal(percent))[1]
            - fees.split(refunded.get(ref, 0), Decimal(percent))[1]
            for ref, gross in sales
        )
        assert sum(balances.values()) == expected
        # what is paid is what Stripe moved to the creator: transfers less reversals
        transfers = [t for t in fake_stripe.objects.values() if t["object"] == "transfer"]
        moved = sum(
            t["amount"] - t["amount_reversed"] for t in transfers if t["destination"] == account
        )
        assert balances[Bucket.PAID] == moved
        assert balances[Bucket.FROZEN] >= 0
        assert balances[Bucket.PENDING] >= 0
        transaction.set_rollback(True)
