"""Staff refunds (issue 15): before the payout the creator's pending share is reduced in
proportion; after it the payout's transfer is reversed in proportion; when the reversal is not
possible (the creator's Stripe balance went to their bank) the creator's balance goes negative
and the next payout nets it. A full refund stops the purchase from running."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.test import Client
from django.urls import reverse

from accounts.models import User
from billing.stripe_client import stripe_client
from core.exceptions import Conflict, ServiceUnavailable, ValidationFailed
from marketplace import earnings
from marketplace.models import LedgerEntry, Payout, Purchase, Refund
from marketplace.payouts import payouts_run
from tenants.models import AuditEvent
from tests.fakes import FakeStripe
from tests.helpers.money import Shop, make_purchase, make_shop
from tests.helpers.personas import World

SOLD = datetime.fromisoformat("2026-06-01T12:00:00+00:00")
DUE = SOLD + timedelta(days=8)


def _sold(world: World, fake: FakeStripe, gross: int = 2500) -> tuple[Shop, Purchase, str]:
    shop = make_shop(workspace=world.workspace_a)
    purchase = make_purchase(shop, buyer=world.workspace_b, amount=gross)
    charge = fake.add_charge(gross, "usd")
    earnings.sale_record(
        purchase=purchase, gross_cents=gross, stripe_ref=charge["id"], occurred_at=SOLD
    )
    return shop, purchase, str(charge["id"])


def _refund(purchase: Purchase, amount: int, by: User | None = None) -> Refund:
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref="", amount_cents=amount, reason="asked", by=by
    )
    return earnings.refund_complete(refund_id=refund.pk)


def test_refund_before_payout_takes_the_share_from_pending_in_proportion(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop, purchase, charge = _sold(world, fake_stripe)
    refund = _refund(purchase, 1000)
    assert refund.status == Refund.Status.DONE
    (call,) = [r for r in fake_stripe.requests if r.path == "/v1/refunds"]
    assert call.body["charge"] == charge
    assert call.body["amount"] == "1000"
    assert call.headers["idempotency-key"] == f"refund-{refund.pk}"
    assert fake_stripe.get(charge)["amount_refunded"] == 1000
    # 20 % fee: 1000 back to the buyer is 800 of the creator's share and 200 of the fee
    assert earnings.balances(publisher_id=shop.publisher.pk)["pending"] == 2000 - 800
    purchase.refresh_from_db()
    assert purchase.runnable

    _refund(purchase, 1500)
    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 0,
        "available": 0,
        "frozen": 0,
        "paid": 0,
    }
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.REFUNDED
    assert not purchase.runnable
    event = AuditEvent.objects.filter(action="money.refunded").latest("id")
    assert event.workspace == world.workspace_a
    assert event.metadata["amount_cents"] == 1500


def test_a_refund_is_never_more_than_what_is_left_and_says_which_field(
    world: World, fake_stripe: FakeStripe
) -> None:
    _, purchase, _ = _sold(world, fake_stripe)
    _refund(purchase, 2000)
    with pytest.raises(ValidationFailed) as caught:
        earnings.refund_create(
            purchase_id=purchase.pk, sale_ref="", amount_cents=501, reason="again", by=None
        )
    assert "amount" in caught.value.fields
    assert "5.00 USD" in caught.value.message
    with pytest.raises(ValidationFailed) as caught:
        earnings.refund_create(
            purchase_id=purchase.pk, sale_ref="", amount_cents=100, reason=" ", by=None
        )
    assert "reason" in caught.value.fields
    with pytest.raises(ValidationFailed) as caught:
        earnings.refund_create(
            purchase_id=purchase.pk, sale_ref="ch_other", amount_cents=100, reason="x", by=None
        )
    assert "sale_ref" in caught.value.fields


def test_refund_after_payout_reverses_the_transfer_in_proportion(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop, purchase, _ = _sold(world, fake_stripe)
    earnings.earnings_release(now=DUE)
    payouts_run(now=DUE)
    (payout,) = Payout.objects.all()

    refund = _refund(purchase, 1250)  # half: half of the creator's 2000 comes back
    reversal = fake_stripe.get(refund.stripe_reversal_id)
    assert reversal["transfer"] == payout.stripe_transfer_id
    assert reversal["amount"] == 1000
    assert fake_stripe.balance_of(shop.creator.stripe_account_id) == 1000
    assert earnings.balances(publisher_id=shop.publisher.pk)["paid"] == 1000
    assert LedgerEntry.objects.filter(kind="transfer_reversal").count() == 1
    assert earnings.refundable_cents(sale_ref=refund.sale_ref) == 1250


def test_when_the_reversal_fails_the_balance_goes_negative_and_the_next_payout_nets_it(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop, purchase, _ = _sold(world, fake_stripe)
    earnings.earnings_release(now=DUE)
    payouts_run(now=DUE)
    fake_stripe.pay_out(shop.creator.stripe_account_id)  # the creator's bank got it

    refund = _refund(purchase, 2500)
    assert refund.stripe_reversal_id == ""
    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 0,
        "available": -2000,
        "frozen": 0,
        "paid": 2000,
    }
    (clawback,) = LedgerEntry.objects.filter(kind="clawback")
    assert clawback.amount_cents == -2000

    # a later sale of 50.00 (40.00 to the creator) pays 40.00 - 20.00 owed = 20.00
    later = make_purchase(shop, buyer=world.workspace_a, amount=5000)
    charge = fake_stripe.add_charge(5000, "usd")
    earnings.sale_record(purchase=later, gross_cents=5000, stripe_ref=charge["id"], occurred_at=DUE)
    earnings.earnings_release(now=DUE + timedelta(days=8))
    payouts_run(now=DUE + timedelta(days=8))
    latest = Payout.objects.latest("created_at")
    assert latest.amount_cents == 2000
    assert fake_stripe.get(latest.stripe_transfer_id)["amount"] == 2000
    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 0,
        "available": 0,
        "frozen": 0,
        "paid": 4000,
    }


def test_staff_refund_from_the_admin(world: World, fake_stripe: FakeStripe) -> None:
    _, purchase, _ = _sold(world, fake_stripe)
    staff = User.objects.create_superuser(email="staff@platform.test", password="x" * 12)
    client = Client()
    client.force_login(staff)
    url = reverse("admin:marketplace_refund_add")
    assert client.get(url).status_code == 200
    too_much = client.post(
        url, {"purchase": purchase.pk, "sale_ref": "", "amount": "30.00", "reason": "duplicate"}
    )
    assert too_much.status_code == 200
    assert "what is left to refund of this sale" in too_much.content.decode()
    assert not Refund.objects.exists()

    done = client.post(
        url, {"purchase": purchase.pk, "sale_ref": "", "amount": "25.00", "reason": "duplicate"}
    )
    assert done.status_code == 302
    (refund,) = Refund.objects.all()
    assert (refund.status, refund.amount_cents, refund.by) == (Refund.Status.DONE, 2500, staff)
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.REFUNDED
    listed = client.get(reverse("admin:marketplace_refund_changelist"))
    assert listed.status_code == 200
    assert refund.sale_ref in listed.content.decode()
    assert client.get(reverse("admin:marketplace_payout_changelist")).status_code == 200
    # the ledger is read-only in the admin
    ledger = client.get(reverse("admin:marketplace_ledgerentry_changelist"))
    assert ledger.status_code == 200
    entry = LedgerEntry.objects.first()
    assert entry is not None
    page = client.get(reverse("admin:marketplace_ledgerentry_change", args=[entry.pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()


def test_stripe_failing_leaves_the_refund_pending_and_retry_finishes_it_once(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop, purchase, charge = _sold(world, fake_stripe)
    fake_stripe.fail_next("/v1/refunds", status=500, times=3)
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref="", amount_cents=500, reason="asked", by=None
    )
    with pytest.raises(Exception, match="retry it from Marketplace"):
        earnings.refund_complete(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING
    assert "Retry" in refund.last_error
    # what is under way counts: it cannot be refunded twice meanwhile
    assert earnings.refundable_cents(sale_ref=charge) == 2000
    earnings.refund_complete(refund_id=refund.pk)
    earnings.refund_complete(refund_id=refund.pk)
    assert fake_stripe.get(charge)["amount_refunded"] == 500
    assert earnings.balances(publisher_id=shop.publisher.pk)["pending"] == 2000 - 400


def test_staff_find_a_purchase_and_refund_one_of_its_sales_from_its_page(
    world: World, fake_stripe: FakeStripe
) -> None:
    _, purchase, charge = _sold(world, fake_stripe)
    _refund(purchase, 500)
    staff = User.objects.create_superuser(email="staff@platform.test", password="x" * 12)
    client = Client()
    client.force_login(staff)

    # found by the listing's title; read-only
    listed = client.get(
        reverse("admin:marketplace_purchase_changelist"), {"q": purchase.listing.title}
    )
    assert listed.status_code == 200
    assert purchase.listing.title in listed.content.decode()
    assert client.get(reverse("admin:marketplace_purchase_add")).status_code == 403
    page = client.get(reverse("admin:marketplace_purchase_change", args=[purchase.pk]))
    html = page.content.decode()
    assert 'name="_save"' not in html
    # its sale: paid 25.00, fee 5.00, creator's share 20.00, 20.00 left after the 5.00 refund
    assert charge in html
    cells = [f"<td>{money} USD</td>" for money in ("25.00", "5.00", "20.00", "20.00")]
    assert "".join(cells) in html
    refund_link = reverse("admin:marketplace_refund_add") + (
        f"?purchase={purchase.pk}&amp;sale_ref={charge}&amp;amount=20.00"
    )
    assert refund_link in html

    # the link opens the refund form filled in for that sale
    form = client.get(refund_link.replace("&amp;", "&")).content.decode()
    assert f'value="{purchase.pk}"' in form
    assert f'value="{charge}"' in form
    assert 'value="20.00"' in form
    done = client.post(
        reverse("admin:marketplace_refund_add"),
        {"purchase": purchase.pk, "sale_ref": charge, "amount": "20.00", "reason": "asked"},
    )
    assert done.status_code == 302
    assert earnings.refundable_cents(sale_ref=charge) == 0
    # nothing is left to refund: no link any more
    again = client.get(reverse("admin:marketplace_purchase_change", args=[purchase.pk]))
    assert "Refund…" not in again.content.decode()


# --- Fixes after the audit: a refund is made once, refused or canceled cleanly, and never races
# a payout or a dispute.


def _paid_out(world: World, fake: FakeStripe) -> tuple[Shop, Purchase, str, Payout]:
    shop, purchase, charge = _sold(world, fake)
    earnings.earnings_release(now=DUE)
    payouts_run(now=DUE)
    (payout,) = Payout.objects.all()
    return shop, purchase, charge, payout


def _stripe_refunds(fake: FakeStripe) -> list[dict[str, Any]]:
    return [o for o in fake.objects.values() if o["object"] == "refund"]


def test_a_refund_retried_after_stripe_forgot_its_key_is_not_made_twice(
    world: World, fake_stripe: FakeStripe
) -> None:
    # given a paid-out sale whose transfer reversal fails (Stripe answers 5xx) after the
    # buyer's refund was made
    shop, purchase, charge, payout = _paid_out(world, fake_stripe)
    fake_stripe.fail_next(
        f"/v1/transfers/{payout.stripe_transfer_id}/reversals", status=500, times=3
    )
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref="", amount_cents=1000, reason="asked", by=None
    )
    with pytest.raises(ServiceUnavailable) as caught:
        earnings.refund_complete(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING
    (made,) = _stripe_refunds(fake_stripe)
    assert refund.stripe_refund_id == made["id"]  # saved at once, in its own commit
    assert f"The buyer's refund {made['id']} is made and saved" in caught.value.message
    assert "nothing was recorded" not in refund.last_error
    assert "Retry" in refund.last_error
    assert not LedgerEntry.objects.filter(refund=refund).exists()

    # when staff press Retry a day later (Stripe has forgotten the idempotency key)
    fake_stripe.forget_idempotency_keys()
    done = earnings.refund_complete(refund_id=refund.pk)

    # then the buyer is refunded once, and the creator's share reversed once
    assert done.status == Refund.Status.DONE
    assert fake_stripe.get(charge)["amount_refunded"] == 1000
    assert len(_stripe_refunds(fake_stripe)) == 1
    assert [r.method for r in fake_stripe.requests if r.path == "/v1/refunds"] == ["POST"]
    assert fake_stripe.get(done.stripe_reversal_id)["amount"] == 800
    assert earnings.balances(publisher_id=shop.publisher.pk)["paid"] == 2000 - 800


def test_a_refund_killed_before_its_stripe_id_was_saved_is_found_at_stripe_a_day_later(
    world: World, fake_stripe: FakeStripe
) -> None:
    _, purchase, charge = _sold(world, fake_stripe)
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref="", amount_cents=700, reason="asked", by=None
    )
    # the database fails the save of Stripe's answer (the process "dies" right after Stripe)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION pg_temp.killed() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'worker killed before the bookkeeping'; END $$
            LANGUAGE plpgsql;
            CREATE TRIGGER killed BEFORE UPDATE ON marketplace_refund
                FOR EACH ROW WHEN (NEW.stripe_refund_id <> '') EXECUTE FUNCTION pg_temp.killed();
            """
        )
    with pytest.raises(DatabaseError, match="killed"):
        earnings.refund_complete(refund_id=refund.pk)
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER killed ON marketplace_refund")
    refund.refresh_from_db()
    assert (refund.status, refund.stripe_refund_id) == (Refund.Status.PENDING, "")
    assert len(_stripe_refunds(fake_stripe)) == 1

    # a day later: the key is forgotten, the refund is looked up by its metadata and adopted
    fake_stripe.forget_idempotency_keys()
    done = earnings.refund_complete(refund_id=refund.pk, now=refund.created_at + timedelta(days=1))
    assert done.status == Refund.Status.DONE
    (made,) = _stripe_refunds(fake_stripe)
    assert done.stripe_refund_id == made["id"]
    assert fake_stripe.get(charge)["amount_refunded"] == 700


def test_a_refund_is_refused_while_the_payout_of_its_money_is_being_sent(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop, purchase, _ = _sold(world, fake_stripe)
    earnings.earnings_release(now=DUE)
    fake_stripe.fail_next("/v1/transfers", status=400, times=1)
    payouts_run(now=DUE)
    (payout,) = Payout.objects.all()
    assert payout.status == Payout.Status.PENDING

    with pytest.raises(ValidationFailed) as caught:
        earnings.refund_create(
            purchase_id=purchase.pk, sale_ref="", amount_cents=2500, reason="asked", by=None
        )
    assert "sale_ref" in caught.value.fields
    assert "a payout of this money is being sent" in caught.value.message
    assert "retry or cancel it in Marketplace → Payouts first" in caught.value.message
    assert not Refund.objects.exists()

    # once the payout is sent, the refund reverses it: nothing is paid twice
    payouts_run(now=DUE + timedelta(hours=1))
    payout.refresh_from_db()
    assert payout.status == Payout.Status.PAID
    refund = _refund(purchase, 2500)
    assert fake_stripe.get(refund.stripe_reversal_id)["amount"] == 2000
    assert fake_stripe.balance_of(shop.creator.stripe_account_id) == 0
    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 0,
        "available": 0,
        "frozen": 0,
        "paid": 0,
    }


def test_a_refund_is_refused_while_the_sale_has_an_open_dispute_even_on_paid_money(
    world: World, fake_stripe: FakeStripe
) -> None:
    _, purchase, charge, _ = _paid_out(world, fake_stripe)
    dispute = fake_stripe.dispute(charge)
    earnings.dispute_sync(dispute=fake_stripe.get(dispute["id"]), now=DUE)
    assert earnings.positions(charge)["frozen"] == 0  # paid already: nothing to freeze

    with pytest.raises(ValidationFailed) as caught:
        earnings.refund_create(
            purchase_id=purchase.pk, sale_ref="", amount_cents=2500, reason="asked", by=None
        )
    assert "sale_ref" in caught.value.fields
    assert f"is disputed ({dispute['id']})" in caught.value.message

    # once it is won, the sale can be refunded again
    fake_stripe.close_dispute(dispute["id"], won=True)
    earnings.dispute_sync(dispute=fake_stripe.get(dispute["id"]), now=DUE)
    assert earnings.refundable_cents(sale_ref=charge) == 2500
    assert earnings.refund_create(
        purchase_id=purchase.pk, sale_ref="", amount_cents=100, reason="asked", by=None
    )


def test_a_refund_stripe_refuses_for_good_fails_and_stops_counting(
    world: World, fake_stripe: FakeStripe
) -> None:
    # the buyer disputed the charge at their bank; its webhook has not arrived yet
    _, purchase, charge = _sold(world, fake_stripe)
    fake_stripe.dispute(charge)
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref="", amount_cents=2500, reason="asked", by=None
    )
    with pytest.raises(Conflict, match="marked failed"):
        earnings.refund_complete(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == Refund.Status.FAILED
    assert "has been disputed" in refund.last_error
    assert earnings.refundable_cents(sale_ref=charge) == 2500
    assert earnings.refund_complete(refund_id=refund.pk).status == Refund.Status.FAILED
    assert len([r for r in fake_stripe.requests if r.path == "/v1/refunds"]) == 1
    event = AuditEvent.objects.get(action="money.refund_failed")
    assert event.workspace == world.workspace_a
    assert event.metadata["refund_id"] == refund.pk

    # staff see it refused, with Stripe's error
    staff = User.objects.create_superuser(email="staff@platform.test", password="x" * 12)
    client = Client()
    client.force_login(staff)
    listed = client.get(reverse("admin:marketplace_refund_changelist")).content.decode()
    assert "Refused by Stripe" in listed
    assert "has been disputed" in listed


def test_staff_cancel_a_pending_refund_stripe_never_made(
    world: World, fake_stripe: FakeStripe
) -> None:
    _, purchase, charge = _sold(world, fake_stripe)
    fake_stripe.fail_next("/v1/refunds", status=500, times=3)
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref="", amount_cents=2000, reason="asked", by=None
    )
    with pytest.raises(ServiceUnavailable):
        earnings.refund_complete(refund_id=refund.pk)
    assert earnings.refundable_cents(sale_ref=charge) == 500

    staff = User.objects.create_superuser(email="staff@platform.test", password="x" * 12)
    client = Client()
    client.force_login(staff)
    answer = client.post(
        reverse("admin:marketplace_refund_changelist"),
        {"action": "cancel_refund", "_selected_action": [refund.pk]},
        follow=True,
    )
    assert f"Refund {refund.pk} canceled" in answer.content.decode()
    refund.refresh_from_db()
    assert refund.status == Refund.Status.CANCELED
    assert earnings.refundable_cents(sale_ref=charge) == 2500
    assert not _stripe_refunds(fake_stripe)
    assert AuditEvent.objects.filter(action="money.refund_canceled", actor=staff).exists()
    # a canceled refund is never carried out afterwards
    assert earnings.refund_complete(refund_id=refund.pk).status == Refund.Status.CANCELED
    assert not _stripe_refunds(fake_stripe)


def test_a_refund_stripe_made_cannot_be_canceled(world: World, fake_stripe: FakeStripe) -> None:
    _, purchase, _, payout = _paid_out(world, fake_stripe)
    fake_stripe.fail_next(
        f"/v1/transfers/{payout.stripe_transfer_id}/reversals", status=500, times=3
    )
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref="", amount_cents=1000, reason="asked", by=None
    )
    with pytest.raises(ServiceUnavailable):
        earnings.refund_complete(refund_id=refund.pk)
    with pytest.raises(Conflict, match="Use “Retry” to finish it"):
        earnings.refund_cancel(refund_id=refund.pk, by=None)
    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING
    assert earnings.refund_complete(refund_id=refund.pk).status == Refund.Status.DONE


def test_a_refund_stripe_made_but_we_never_heard_of_is_adopted_not_canceled(
    world: World, fake_stripe: FakeStripe
) -> None:
    _, purchase, charge = _sold(world, fake_stripe)
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref="", amount_cents=300, reason="asked", by=None
    )
    # Stripe made it, but the answer never reached us (here: made directly with its metadata)
    made = stripe_client().v1.refunds.create(
        params={"charge": charge, "amount": 300, "metadata": {"refund_id": str(refund.pk)}}
    )
    with pytest.raises(Conflict, match=f"Stripe made refund {refund.pk}"):
        earnings.refund_cancel(refund_id=refund.pk, by=None)
    refund.refresh_from_db()
    assert refund.stripe_refund_id == made.id
    assert earnings.refund_complete(refund_id=refund.pk).status == Refund.Status.DONE
    assert fake_stripe.get(charge)["amount_refunded"] == 300


def test_a_reversal_made_before_the_bookkeeping_died_is_adopted_a_day_later(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop, purchase, charge, payout = _paid_out(world, fake_stripe)
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref="", amount_cents=1250, reason="asked", by=None
    )
    # Stripe refunds and reverses; the process "dies" before the refund is marked done
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION pg_temp.killed() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'worker killed before the bookkeeping'; END $$
            LANGUAGE plpgsql;
            CREATE TRIGGER killed BEFORE UPDATE ON marketplace_refund
                FOR EACH ROW WHEN (NEW.status = 'done') EXECUTE FUNCTION pg_temp.killed();
            """
        )
    with pytest.raises(DatabaseError, match="killed"):
        earnings.refund_complete(refund_id=refund.pk)
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER killed ON marketplace_refund")
    reversals = [o for o in fake_stripe.objects.values() if o["object"] == "transfer_reversal"]
    assert [r["amount"] for r in reversals] == [1000]
    assert not LedgerEntry.objects.filter(refund=refund).exists()

    # Retry a day later: Stripe forgot both keys; neither the refund nor the reversal is redone
    fake_stripe.forget_idempotency_keys()
    done = earnings.refund_complete(refund_id=refund.pk, now=refund.created_at + timedelta(days=1))

    assert done.status == Refund.Status.DONE
    (reversal,) = [o for o in fake_stripe.objects.values() if o["object"] == "transfer_reversal"]
    assert (done.stripe_reversal_id, reversal["transfer"]) == (
        reversal["id"],
        payout.stripe_transfer_id,
    )
    assert len(_stripe_refunds(fake_stripe)) == 1
    assert fake_stripe.get(charge)["amount_refunded"] == 1250
    assert fake_stripe.balance_of(shop.creator.stripe_account_id) == 1000
    assert earnings.balances(publisher_id=shop.publisher.pk)["paid"] == 1000


def test_a_pending_refund_retried_after_a_payout_was_booked_waits_for_it(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop, purchase, charge = _sold(world, fake_stripe)
    # staff refund while Stripe is down: the refund is saved, pending
    fake_stripe.fail_next("/v1/refunds", status=500, times=3)
    refund = earnings.refund_create(
        purchase_id=purchase.pk, sale_ref="", amount_cents=2500, reason="asked", by=None
    )
    with pytest.raises(ServiceUnavailable):
        earnings.refund_complete(refund_id=refund.pk)
    # meanwhile the hold ends and a payout of that money is booked, but not sent yet
    earnings.earnings_release(now=DUE)
    fake_stripe.fail_next("/v1/transfers", status=400, times=1)
    payouts_run(now=DUE)
    (payout,) = Payout.objects.all()
    assert payout.status == Payout.Status.PENDING

    # Retry waits: nothing refunded, no clawback, the reason on the row
    with pytest.raises(Conflict, match="a payout of this money is being sent"):
        earnings.refund_complete(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING
    assert "stays pending: retry it once that is settled" in refund.last_error
    assert fake_stripe.get(charge)["amount_refunded"] == 0
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CLAWBACK).exists()

    # once the payout is sent, the retry refunds and reverses its transfer: paid once, back once
    payouts_run(now=DUE + timedelta(hours=1))
    done = earnings.refund_complete(refund_id=refund.pk)
    assert done.status == Refund.Status.DONE
    assert fake_stripe.get(done.stripe_reversal_id)["amount"] == 2000
    assert fake_stripe.balance_of(shop.creator.stripe_account_id) == 0
    assert len([r for r in fake_stripe.requests if r.path == "/v1/transfers"]) == 2  # 1 failed
