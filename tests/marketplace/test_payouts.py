"""Payouts are never made twice: two runs at once, or a run killed between Stripe's transfer
and our bookkeeping, end with exactly one transfer; Stripe being down leaves the payout pending
with what to do, and the next run sends it; staff can cancel an unsent payout."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from core.exceptions import ServiceUnavailable
from marketplace import earnings
from marketplace.models import Payout
from marketplace.payouts import payout_cancel, payouts_run
from tenants.models import AuditEvent
from tests.fakes import FakeStripe
from tests.helpers.money import Shop, make_purchase, make_shop
from tests.helpers.personas import World

SOLD = datetime.fromisoformat("2026-05-04T10:00:00+00:00")
DUE = SOLD + timedelta(days=8)


def _earned(world: World, fake: FakeStripe, gross: int = 2500) -> Shop:
    shop = make_shop(workspace=world.workspace_a)
    purchase = make_purchase(shop, buyer=world.workspace_b, amount=gross)
    charge = fake.add_charge(gross, "usd")
    earnings.sale_record(
        purchase=purchase, gross_cents=gross, stripe_ref=charge["id"], occurred_at=SOLD
    )
    earnings.earnings_release(now=DUE)
    return shop


def _transfers(fake: FakeStripe) -> list[dict[str, Any]]:
    return [o for o in fake.objects.values() if o["object"] == "transfer"]


def test_two_runs_at_once_make_one_transfer(
    committed_world: World, fake_stripe: FakeStripe
) -> None:
    shop = _earned(committed_world, fake_stripe)
    # the first run's transfer is made at Stripe, but its answer is held: it is mid-payout
    fake_stripe.hold_after("/v1/transfers", 0)
    errors: list[BaseException] = []

    def first_run() -> None:
        try:
            payouts_run(now=DUE)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=first_run)
    thread.start()
    assert fake_stripe.holding.wait(20)
    # the second run finds the payout booked and being sent (row locked): it leaves it alone
    second = payouts_run(now=DUE)
    assert (second.booked, second.sent) == (0, 0)
    fake_stripe.release()
    thread.join(20)
    assert not thread.is_alive()
    assert errors == []
    assert len(_transfers(fake_stripe)) == 1
    (payout,) = Payout.objects.all()
    assert payout.status == Payout.Status.PAID
    assert earnings.balances(publisher_id=shop.publisher.pk)["paid"] == 2000


def test_a_run_killed_after_the_transfer_is_finished_by_the_next_with_no_second_transfer(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop = _earned(world, fake_stripe)
    # the database fails the bookkeeping once Stripe made the transfer (the process "dies")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION pg_temp.killed() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'worker killed before the bookkeeping'; END $$
            LANGUAGE plpgsql;
            CREATE TRIGGER killed BEFORE UPDATE ON marketplace_payout
                FOR EACH ROW WHEN (NEW.status = 'paid') EXECUTE FUNCTION pg_temp.killed();
            """
        )
    with pytest.raises(DatabaseError, match="killed"):
        payouts_run(now=DUE)
    assert len(_transfers(fake_stripe)) == 1
    (payout,) = Payout.objects.all()
    assert payout.status == Payout.Status.PENDING  # booked, transfer made, not yet marked
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER killed ON marketplace_payout")

    report = payouts_run(now=DUE + timedelta(hours=1))
    assert report.sent == 1
    payout.refresh_from_db()
    assert payout.status == Payout.Status.PAID
    (transfer,) = _transfers(fake_stripe)
    assert payout.stripe_transfer_id == transfer["id"]
    posts = [r for r in fake_stripe.requests if r.path == "/v1/transfers"]
    assert len(posts) == 2
    assert {r.headers["idempotency-key"] for r in posts} == {payout.idempotency_key}
    assert fake_stripe.balance_of(shop.creator.stripe_account_id) == 2000


def test_stripe_down_leaves_the_payout_pending_with_what_to_do_then_it_is_sent(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop = _earned(world, fake_stripe)
    fake_stripe.fail_next("/v1/transfers", status=503, times=3)  # the SDK retries twice
    report = payouts_run(now=DUE)
    assert (report.booked, report.sent, report.failed) == (1, 0, 1)
    (payout,) = Payout.objects.all()
    assert payout.status == Payout.Status.PENDING
    assert "retries it with the same idempotency key" in payout.last_error
    # the amount is booked: the creator sees it as paid out, being sent
    assert earnings.balances(publisher_id=shop.publisher.pk)["paid"] == 2000

    report = payouts_run(now=DUE + timedelta(days=1))  # the next run, another period
    assert (report.booked, report.sent) == (0, 1)
    payout.refresh_from_db()
    assert payout.status == Payout.Status.PAID
    assert payout.period == DUE.date().isoformat()
    assert len(_transfers(fake_stripe)) == 1


def test_staff_cancel_a_refused_payout_and_the_money_is_available_again(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop = _earned(world, fake_stripe)
    fake_stripe.fail_next("/v1/transfers", status=400, message="Payouts disabled.")
    payouts_run(now=DUE)
    (payout,) = Payout.objects.all()
    assert "Stripe refused the transfer: Payouts disabled." in payout.last_error
    assert "Cancel payout" in payout.last_error
    payout_cancel(payout_id=payout.pk, by=world.owner, reason="account closed")
    payout.refresh_from_db()
    assert payout.status == Payout.Status.CANCELED
    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 0,
        "available": 2000,
        "frozen": 0,
        "paid": 0,
    }
    # the next period pays it
    assert payouts_run(now=DUE + timedelta(days=1)).sent == 1
    assert len(_transfers(fake_stripe)) == 1


def test_the_command_advances_the_clock_in_test_mode(world: World, fake_stripe: FakeStripe) -> None:
    shop = make_shop(workspace=world.workspace_a)
    purchase = make_purchase(shop, buyer=world.workspace_b)
    earnings.sale_record(
        purchase=purchase, gross_cents=2500, stripe_ref="ch_now", occurred_at=timezone.now()
    )
    out = StringIO()
    call_command("pay_creators", stdout=out)
    assert "0 sale(s) became available" in out.getvalue()
    call_command("pay_creators", days_ahead=8, stdout=out)
    assert "1 sale(s) became available; 1 payout(s) booked, 1 sent" in out.getvalue()
    assert earnings.balances(publisher_id=shop.publisher.pk)["paid"] == 2000


def test_staff_pay_creators_now_from_the_admin_with_the_test_clock(
    world: World, fake_stripe: FakeStripe, settings: Any
) -> None:
    shop = make_shop(workspace=world.workspace_a)
    purchase = make_purchase(shop, buyer=world.workspace_b)
    earnings.sale_record(
        purchase=purchase, gross_cents=2500, stripe_ref="ch_admin", occurred_at=timezone.now()
    )
    staff = User.objects.create_superuser(email="staff@platform.test", password="x" * 12)
    client = Client()
    client.force_login(staff)
    listed = client.get(reverse("admin:marketplace_payout_changelist")).content.decode()
    url = reverse("admin:marketplace_payout_pay_now")
    assert url in listed
    assert "Stripe test mode" in client.get(url).content.decode()

    bad = client.post(url, {"days_ahead": "-1"})
    assert bad.status_code == 200
    assert "greater than or equal to 0" in bad.content.decode()
    now = client.post(url, {"days_ahead": "0"}, follow=True)
    assert "0 sale(s) became available; 0 payout(s) booked" in now.content.decode()
    assert earnings.balances(publisher_id=shop.publisher.pk)["pending"] == 2000

    paid = client.post(url, {"days_ahead": "8"}, follow=True)
    assert "1 sale(s) became available; 1 payout(s) booked, 1 sent" in paid.content.decode()
    assert earnings.balances(publisher_id=shop.publisher.pk)["paid"] == 2000
    assert len(_transfers(fake_stripe)) == 1

    # real money is never paid early: live mode refuses the clock, naming the field
    settings.STRIPE_LIVE_MODE = True
    settings.STRIPE_LIVE_SECRET_KEY = "sk_live_" + "x" * 24
    live = client.post(url, {"days_ahead": "8"})
    assert live.status_code == 200
    assert "Only in Stripe test mode: real money is not paid early." in live.content.decode()
    with pytest.raises(CommandError, match="--days-ahead: Only in Stripe test mode"):
        call_command("pay_creators", days_ahead=8, stdout=StringIO())
    # members of the platform who are not staff never reach it
    member = Client()
    member.force_login(world.owner)
    assert member.get(url).status_code == 302


def test_staff_see_a_failed_payout_with_what_to_do_and_retry_it(
    world: World, fake_stripe: FakeStripe
) -> None:
    _earned(world, fake_stripe)
    fake_stripe.fail_next("/v1/transfers", status=400, message="Payouts disabled.")
    payouts_run(now=DUE)
    (payout,) = Payout.objects.all()
    staff = User.objects.create_superuser(email="staff@platform.test", password="x" * 12)
    client = Client()
    client.force_login(staff)
    page = client.get(reverse("admin:marketplace_payout_change", args=[payout.pk]))
    html = page.content.decode()
    assert "Stripe refused the transfer: Payouts disabled." in html
    assert "Retrying never makes a second transfer" in html

    client.post(
        reverse("admin:marketplace_payout_changelist"),
        {"action": "retry_now", "_selected_action": [payout.pk]},
    )
    payout.refresh_from_db()
    assert payout.status == Payout.Status.PAID
    assert len(_transfers(fake_stripe)) == 1


def _killed_after_the_transfer(fake: FakeStripe) -> Payout:
    """A payout run whose process "dies" once Stripe made the transfer, before the row says so."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION pg_temp.killed() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'worker killed before the bookkeeping'; END $$
            LANGUAGE plpgsql;
            CREATE TRIGGER killed BEFORE UPDATE ON marketplace_payout
                FOR EACH ROW WHEN (NEW.status = 'paid') EXECUTE FUNCTION pg_temp.killed();
            """
        )
    with pytest.raises(DatabaseError, match="killed"):
        payouts_run(now=DUE)
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER killed ON marketplace_payout; DROP FUNCTION pg_temp.killed()")
    (payout,) = Payout.objects.all()
    assert payout.status == Payout.Status.PENDING
    assert len(_transfers(fake)) == 1
    return payout


def test_cancelling_a_payout_whose_transfer_stripe_made_adopts_it_instead(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop = _earned(world, fake_stripe)
    payout = _killed_after_the_transfer(fake_stripe)
    fake_stripe.forget_idempotency_keys()
    staff = User.objects.create_superuser(email="staff@platform.test", password="x" * 12)
    client = Client()
    client.force_login(staff)

    answer = client.post(
        reverse("admin:marketplace_payout_changelist"),
        {"action": "cancel_payout", "_selected_action": [payout.pk]},
        follow=True,
    )

    (transfer,) = _transfers(fake_stripe)
    assert "was not canceled: Stripe had already made its transfer" in answer.content.decode()
    payout.refresh_from_db()
    assert (payout.status, payout.stripe_transfer_id) == (Payout.Status.PAID, transfer["id"])
    assert not AuditEvent.objects.filter(action="money.payout_canceled").exists()
    assert AuditEvent.objects.filter(action="money.payout_sent", actor=staff).exists()
    # the next runs pay nothing more: the creator got it once
    assert payouts_run(now=DUE + timedelta(days=2)).booked == 0
    assert len(_transfers(fake_stripe)) == 1
    assert fake_stripe.balance_of(shop.creator.stripe_account_id) == 2000
    assert earnings.balances(publisher_id=shop.publisher.pk) == {
        "pending": 0,
        "available": 0,
        "frozen": 0,
        "paid": 2000,
    }


def test_a_payout_is_not_canceled_when_stripe_cannot_say_whether_it_was_made(
    world: World, fake_stripe: FakeStripe
) -> None:
    _earned(world, fake_stripe)
    payout = _killed_after_the_transfer(fake_stripe)
    fake_stripe.fail_next("/v1/transfers", status=503, times=3)
    with pytest.raises(ServiceUnavailable, match="nothing was canceled"):
        payout_cancel(payout_id=payout.pk, by=world.owner, reason="stuck")
    payout.refresh_from_db()
    assert payout.status == Payout.Status.PENDING


def test_failed_and_canceled_payouts_are_in_the_creators_audit_log(
    world: World, fake_stripe: FakeStripe
) -> None:
    shop = _earned(world, fake_stripe)
    fake_stripe.fail_next("/v1/transfers", status=400, message="Payouts disabled.")
    payouts_run(now=DUE)
    (payout,) = Payout.objects.all()
    payout_cancel(payout_id=payout.pk, by=world.owner, reason="account closed")

    events = AuditEvent.objects.filter(workspace=shop.publisher.workspace, target_id=str(payout.pk))
    (failed,) = events.filter(action="money.payout_failed")
    assert "Payouts disabled." in failed.metadata["error"]
    assert failed.metadata["attempts"] == 1
    (canceled,) = events.filter(action="money.payout_canceled")
    assert canceled.actor == world.owner
    assert canceled.metadata == {"reason": "account closed", "amount_cents": 2000}
