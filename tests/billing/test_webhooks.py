"""Stripe's webhooks, end to end: the real stripe SDK talks to the loopback fake, which posts
signed events over HTTP to dj-stripe's view on the running test server (the endpoint registered
by `manage.py billing_webhook_endpoint`). The view verifies and stores each delivery and answers
200; the workers process it (`billing.process_webhooks`: dj-stripe fills its subscription and
invoice tables; our receivers move the workspace's plan row, forward only). Here the test runs
the workers' drain itself (`Billing.row` waits for nothing: it drains first), or a real Celery
worker does:

checkout → the plan (from the webhook, not the redirect); upgrade and downgrade; cancel at
period end → Free at the period's end; a failed payment → grace → read-only (runs refused, 402)
→ paid → restored with the count reset; every event delivered three times in random order
gives the same state; a forged or stale signature is refused (400) and changes nothing; the
view answers before processing; a delivery whose message was lost is taken by the sweep; a
failing delivery blocks no other and is tried again after its backoff; the same event taken by
two drains at once is applied once."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import stripe
from celery import current_app
from django.core import mail
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone
from djstripe.models import Event as DjstripeEvent
from djstripe.models import Invoice as DjstripeInvoice
from djstripe.models import Subscription as DjstripeSubscription
from djstripe.models import WebhookEndpoint, WebhookEventTrigger

from billing.demo import seed_demo_plans
from billing.models import StripeMirrorSync, WorkspacePlan
from billing.quotas import run_reserve
from billing.stripe_client import stripe_client
from billing.stripe_mirror import mirror_drain
from billing.stripe_sync import plans_sync
from billing.subscription_state import grace_expire, subscription_sync
from billing.subscriptions import checkout_start
from billing.tasks import process_webhooks
from billing.webhooks import (
    CONNECT_EVENTS,
    ENABLED_EVENTS,
    PROCESS_TASK,
    RETRY_BASE,
    webhooks_drain,
)
from config.celery import app
from tenants.permissions import Perm
from tests.fakes import FakeStripe
from tests.helpers.billing import workers_run
from tests.helpers.personas import World, key_client
from tests.helpers.processes import worker_environment

# dj-stripe checks a key's shape (24 characters or more after the prefix), as Stripe's keys are.
KEY = "sk_test_" + "platform" * 3


@dataclass
class Billing:
    fake: FakeStripe
    world: World
    endpoint: WebhookEndpoint
    client: stripe.StripeClient

    @property
    def row(self) -> WorkspacePlan:
        """Workspace A's plan row once every webhook received is processed."""
        self.settle()
        return self.row_of(self.world.workspace_a.pk)

    @staticmethod
    def row_of(workspace_id: int) -> WorkspacePlan:
        return WorkspacePlan.objects.select_related("plan").get(workspace_id=workspace_id)

    @staticmethod
    def settle() -> None:
        """Process the webhooks received, as the workers do, until none is due (a sync may
        change the subscription at Stripe, whose webhooks come in meanwhile), and the mirror
        refreshes they owe."""
        workers_run()

    def subscribe(self, plan_key: str = "pro", *, workspace_id: int | None = None) -> str:
        """Checkout as the owner would, paid on the fake's page, and the webhooks delivered
        processed; returns the subscription id."""
        url = checkout_start(
            workspace_id=workspace_id or self.world.workspace_a.pk,
            plan_key=plan_key,
            interval="month",
            success_url="https://app.test/ok",
            cancel_url="https://app.test/billing",
            actor_id=self.world.owner.pk,
        )
        session_id = url.rsplit("/", 1)[1]
        subscription_id = str(self.fake.complete_checkout(session_id)["id"])
        self.settle()  # the webhooks delivered (none while the fake holds them)
        return subscription_id

    def price(self, lookup_key: str) -> str:
        (price,) = self.client.v1.prices.list(params={"lookup_keys": [lookup_key]}).data
        return price.id


def _start(fake: FakeStripe, world: World, live_server: Any, settings: Any) -> Billing:
    settings.STRIPE_TEST_SECRET_KEY = KEY
    settings.STRIPE_API_BASE = fake.base_url
    settings.BILLING_QUOTAS = True
    seed_demo_plans()
    plans_sync(stripe_client())
    call_command("billing_webhook_endpoint", url=live_server.url, stdout=StringIO())
    return Billing(
        fake, world, WebhookEndpoint.objects.get(metadata__endpoint="platform"), stripe_client()
    )


@pytest.fixture
def billing(committed_world: World, live_server: Any, settings: Any) -> Iterator[Billing]:
    with FakeStripe() as fake:
        yield _start(fake, committed_world, live_server, settings)
    assert fake.server_errors == []


def _all_delivered(fake: FakeStripe) -> None:
    """Every event reached the platform and was accepted (the last attempt of each is a 2xx)."""
    last = {d.event_id: d.status for d in fake.deliveries}
    assert last, "no webhook was delivered"
    assert {status for status in last.values()} == {200}, fake.deliveries


def test_the_endpoint_command_registers_the_platform_and_connect_endpoints_with_secrets(
    billing: Billing,
) -> None:
    endpoint = billing.endpoint
    connect = WebhookEndpoint.objects.get(metadata__endpoint="connect")
    for stored in (endpoint, connect):
        assert stored.secret.startswith("whsec_")
        assert stored.url.endswith(f"/stripe/webhook/{stored.djstripe_uuid}/")
    # the Connect one was created with connect=true and asks for the connected accounts' events
    assert billing.fake.get(connect.id)["_connect"] is True
    assert billing.fake.get(endpoint.id)["_connect"] is False
    assert set(billing.fake.get(connect.id)["enabled_events"]) == set(CONNECT_EVENTS)
    assert set(billing.fake.get(endpoint.id)["enabled_events"]) == set(ENABLED_EVENTS)
    out = StringIO()
    call_command("billing_webhook_endpoint", url=endpoint.url.split("/stripe/")[0], stdout=out)
    assert out.getvalue().count("kept") == 2
    listed = billing.client.v1.webhook_endpoints.list().data
    assert {e.id for e in listed} == {endpoint.id, connect.id}
    assert WebhookEndpoint.objects.count() == 2

    # the stored secret of the platform's is lost: that one is replaced, the Connect one kept
    WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()
    out = StringIO()
    call_command("billing_webhook_endpoint", url=endpoint.url.split("/stripe/")[0], stdout=out)
    assert f"deleted  {endpoint.id}" in out.getvalue()
    assert f"kept     {connect.id}" in out.getvalue()
    replacement = WebhookEndpoint.objects.get(metadata__endpoint="platform")
    listed = billing.client.v1.webhook_endpoints.list().data
    assert {e.id for e in listed} == {replacement.id, connect.id}
    assert replacement.secret.startswith("whsec_")
    assert replacement.id != endpoint.id


def test_a_kept_endpoint_starts_receiving_the_events_a_new_release_handles(
    billing: Billing,
) -> None:
    # given: the Connect endpoint was registered by an older release that handled fewer events
    connect = WebhookEndpoint.objects.get(metadata__endpoint="connect")
    older = [name for name in CONNECT_EVENTS if not name.startswith("payout.")]
    billing.client.v1.webhook_endpoints.update(connect.id, params={"enabled_events": older})

    # when: this release's deploy runs the endpoint command
    out = StringIO()
    call_command("billing_webhook_endpoint", url=connect.url.split("/stripe/")[0], stdout=out)

    # then: the same endpoint (same secret) now enables every event this release handles
    assert f"updated  {connect.id}" in out.getvalue()
    assert f"kept     {billing.endpoint.id}" in out.getvalue()
    assert set(billing.fake.get(connect.id)["enabled_events"]) == set(CONNECT_EVENTS)
    stored = WebhookEndpoint.objects.get(pk=connect.pk)
    assert set(stored.enabled_events) == set(CONNECT_EVENTS)
    assert stored.secret == connect.secret
    assert WebhookEndpoint.objects.count() == 2


def test_checkout_puts_the_workspace_on_the_plan_from_the_webhook(billing: Billing) -> None:
    url = checkout_start(
        workspace_id=billing.world.workspace_a.pk,
        plan_key="pro",
        interval="month",
        success_url="https://app.test/ok?session={CHECKOUT_SESSION_ID}",
        cancel_url="https://app.test/billing",
        actor_id=billing.world.owner.pk,
    )
    billing.fake.hold_events = True  # Stripe's webhooks come after the customer is sent back
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    connection.request("POST", parts.path + "/complete")  # the Pay button
    answer = connection.getresponse()
    assert answer.status == 303
    assert answer.getheader("Location", "").startswith("https://app.test/ok?session=cs_test_")
    connection.close()
    assert billing.row.plan.key == "free"  # the redirect changes nothing

    billing.fake.flush_events()
    _all_delivered(billing.fake)
    (subscription_id,) = [
        key for key, obj in billing.fake.objects.items() if obj["object"] == "subscription"
    ]
    row = billing.row
    assert row.plan.key == "pro"
    assert row.status == WorkspacePlan.Status.ACTIVE
    assert row.stripe_subscription_id == subscription_id
    sub = billing.fake.get(subscription_id)
    assert row.current_period_end.timestamp() == sub["items"]["data"][0]["current_period_end"]
    # dj-stripe's own tables, which the billing page lists invoices from
    assert DjstripeSubscription.objects.filter(id=subscription_id).exists()
    assert DjstripeInvoice.objects.filter(subscription_id=subscription_id).count() == 1


def _item(billing: Billing, subscription_id: str) -> str:
    return str(billing.fake.get(subscription_id)["items"]["data"][0]["id"])


def _metered_keys(billing: Billing, subscription_id: str) -> list[str]:
    items = billing.fake.get(subscription_id)["items"]["data"]
    prices = [billing.fake.get(item["price"]["id"], "price") for item in items]
    return [p["lookup_key"] for p in prices if p["recurring"]["usage_type"] == "metered"]


def test_upgrade_and_downgrade_follow_the_subscriptions_price(billing: Billing) -> None:
    subscription_id = billing.subscribe("pro")
    WorkspacePlan.objects.filter(workspace=billing.world.workspace_a).update(runs_used=12)

    # the owner changes plan in the customer portal: Stripe updates the subscription's item
    billing.client.v1.subscriptions.update(
        subscription_id,
        params={
            "items": [
                {"id": _item(billing, subscription_id), "price": billing.price("plan_team_month")}
            ]
        },
    )
    row = billing.row
    assert (row.plan.key, row.status) == ("team", WorkspacePlan.Status.ACTIVE)
    assert row.runs_used == 12  # same period: the count goes on
    # the portal swapped only the plan's price: the platform swaps the metered overage item too,
    # so Stripe's free tier is Team's included AI spend, not Pro's
    assert _metered_keys(billing, subscription_id) == ["plan_team_overage"]

    billing.client.v1.subscriptions.update(
        subscription_id,
        params={
            "items": [
                {"id": _item(billing, subscription_id), "price": billing.price("plan_pro_month")}
            ]
        },
    )
    assert billing.row.plan.key == "pro"
    assert _metered_keys(billing, subscription_id) == ["plan_pro_overage"]
    _all_delivered(billing.fake)


def test_cancel_at_period_end_keeps_the_plan_until_the_period_ends_then_free(
    billing: Billing,
) -> None:
    subscription_id = billing.subscribe("pro")
    billing.client.v1.subscriptions.update(subscription_id, params={"cancel_at_period_end": True})
    row = billing.row
    assert (row.plan.key, row.cancel_at_period_end) == ("pro", True)

    # Stripe's clock reaches the period's end (the fake's test-only endpoint)
    request = urllib.request.Request(  # noqa: S310 - the loopback fake
        f"{billing.fake.base_url}/test/subscriptions/{subscription_id}/close_period",
        method="POST",
        data=b"",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        assert json.load(answer)["status"] == "canceled"
    row = billing.row
    assert row.plan.key == "free"
    assert row.status == WorkspacePlan.Status.ACTIVE
    assert (row.stripe_subscription_id, row.cancel_at_period_end) == ("", False)
    assert row.stripe_customer_id  # the customer stays, for a later subscription and invoices
    assert DjstripeSubscription.objects.get(id=subscription_id).status == "canceled"
    _all_delivered(billing.fake)


def test_a_paused_subscription_falls_back_to_free_and_resuming_restores_the_plan(
    billing: Billing,
) -> None:
    """A trial that ended without a payment method pauses the subscription (no invoices): the
    workspace is on Free's limits, nothing deleted; resumed, it is on its plan again."""
    subscription_id = billing.subscribe("pro")
    billing.fake.pause(subscription_id)
    row = billing.row
    assert (row.plan.key, row.status, row.stripe_subscription_id) == (
        "free",
        WorkspacePlan.Status.ACTIVE,
        "",
    )
    assert row.stripe_customer_id

    billing.client.v1.subscriptions.resume(subscription_id)
    row = billing.row
    assert (row.plan.key, row.stripe_subscription_id) == ("pro", subscription_id)
    _all_delivered(billing.fake)


def test_a_failed_payment_gives_grace_then_pauses_runs_until_paid(billing: Billing) -> None:
    workspace_id = billing.world.workspace_a.pk
    subscription_id = billing.subscribe("pro")
    mail.outbox.clear()

    invoice = billing.fake.close_period(subscription_id, fail=True)
    assert invoice is not None
    row = billing.row
    assert row.status == WorkspacePlan.Status.PAST_DUE
    assert row.payment_failed_at is not None
    assert row.grace_ends_at == row.payment_failed_at + timedelta(days=7)
    (sent,) = mail.outbox
    assert "Payment failed for Alpha Inc" in sent.subject
    assert "owner@alpha.test" in sent.to
    assert "Manage payment" in sent.body

    run_reserve(workspace_id=workspace_id)  # the grace period: runs go on
    WorkspacePlan.objects.filter(workspace_id=workspace_id).update(runs_used=40)

    assert grace_expire(now=timezone.now() + timedelta(days=8)) == 1
    assert billing.row.status == WorkspacePlan.Status.READ_ONLY
    api = key_client(billing.world, [Perm.BUILD, Perm.RUN, Perm.WORKSPACE_VIEW])
    agent = api.post("/api/v1/agents/", {"name": "A", "model": "offline:demo"}, format="json")
    assert agent.status_code == 201  # pages and writes other than runs still work
    refused = api.post(f"/api/v1/agents/{agent.json()['id']}/runs/", {"input": "hi"})
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "payment for this workspace's Pro plan failed on" in error["message"]
    assert "Pages and exports still work" in error["message"]
    assert "Manage payment on the Billing page" in error["message"]

    billing.client.v1.invoices.pay(invoice["id"])  # the owner fixed the card
    row = billing.row
    assert (row.status, row.plan.key) == (WorkspacePlan.Status.ACTIVE, "pro")
    assert (row.grace_ends_at, row.payment_failed_at, row.runs_used) == (None, None, 0)
    run_reserve(workspace_id=workspace_id)
    assert DjstripeInvoice.objects.get(id=invoice["id"]).status == "paid"
    _all_delivered(billing.fake)


@pytest.fixture
def shuffled(committed_world: World, live_server: Any, settings: Any) -> Iterator[Billing]:
    """Every event held, then delivered three times, all of them in one random order."""
    with FakeStripe(deliver_times=3, shuffle=True, hold_events=True, seed=14) as fake:
        yield _start(fake, committed_world, live_server, settings)
    assert fake.server_errors == []


def test_every_event_three_times_in_random_order_gives_the_same_state(shuffled: Billing) -> None:
    billing = shuffled
    subscription_id = billing.subscribe("pro")
    billing.client.v1.subscriptions.update(
        subscription_id,
        params={
            "items": [
                {"id": _item(billing, subscription_id), "price": billing.price("plan_team_month")}
            ]
        },
    )
    invoice = billing.fake.close_period(subscription_id, fail=True)
    assert invoice is not None
    billing.client.v1.invoices.pay(invoice["id"])
    assert billing.row.plan.key == "free"  # nothing delivered yet

    events = billing.fake.flush_events()
    _all_delivered(billing.fake)
    assert len(billing.fake.deliveries) == 3 * len(events)
    assert [d.event_id for d in billing.fake.deliveries] != [
        e["id"] for e in events for _ in range(3)
    ]
    row = billing.row
    assert (row.plan.key, row.status) == ("team", WorkspacePlan.Status.ACTIVE)
    assert row.stripe_subscription_id == subscription_id
    assert (row.grace_ends_at, row.payment_failed_at) == (None, None)
    sub = billing.fake.get(subscription_id)
    assert row.current_period_end.timestamp() == sub["items"]["data"][0]["current_period_end"]
    # dj-stripe stored each event once, and its tables hold Stripe's final state
    assert DjstripeEvent.objects.count() == len(events)
    assert DjstripeSubscription.objects.get(id=subscription_id).status == "active"
    assert DjstripeInvoice.objects.get(id=invoice["id"]).status == "paid"


def _post(url: str, payload: str, signature: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - the live test server
        url,
        data=payload.encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def test_a_forged_or_stale_signature_is_refused_and_changes_nothing(billing: Billing) -> None:
    subscription_id = billing.subscribe("pro")
    billing.fake.hold_events = True
    billing.client.v1.subscriptions.cancel(subscription_id)
    deleted = billing.fake.events[-1]  # held: the platform has not seen it
    assert deleted["type"] == "customer.subscription.deleted"
    payload = json.dumps(deleted)
    url, secret = billing.endpoint.url, billing.endpoint.secret
    now = int(timezone.now().timestamp())

    forged = billing.fake.sign(payload, secret="whsec_" + "0" * 32)
    stale = billing.fake.sign(payload, timestamp=now - 3600, secret=secret)
    assert _post(url, payload, forged) == 400
    assert _post(url, payload, stale) == 400
    assert _post(url, payload, "") == 400
    assert billing.row.plan.key == "pro"
    assert not DjstripeEvent.objects.filter(id=deleted["id"]).exists()

    # the same event, signed now with the endpoint's secret, is applied
    assert _post(url, payload, billing.fake.sign(payload, secret=secret)) == 200
    assert billing.row.plan.key == "free"


def test_a_late_event_about_an_ended_subscription_changes_nothing(billing: Billing) -> None:
    first = billing.subscribe("pro")
    snapshot = billing.fake.get(first).copy()  # as it was while active
    billing.client.v1.subscriptions.cancel(first)
    assert billing.row.plan.key == "free"
    second = billing.subscribe("team")
    assert billing.row.stripe_subscription_id == second

    # Stripe delivers, late, an event about the first subscription from when it was active
    billing.fake.emit("customer.subscription.updated", snapshot)
    billing.fake.flush_events()
    _all_delivered(billing.fake)
    row = billing.row
    assert (row.plan.key, row.stripe_subscription_id) == ("team", second)
    assert row.status == WorkspacePlan.Status.ACTIVE


def test_a_run_start_does_not_wait_on_stripe_while_a_webhook_reads_it(billing: Billing) -> None:
    """Stripe is read before the plan row is locked: while the handler waits on Stripe, a run
    start (which locks the same row) goes through. A lock timeout turns waiting into a failure
    instead of a hang."""
    subscription_id = billing.subscribe("pro")
    customer = billing.row.stripe_customer_id
    billing.fake.hold_after(f"/v1/subscriptions/{subscription_id}", 0)
    errors: list[BaseException] = []

    def handle_an_event() -> None:
        try:
            subscription_sync(subscription_id=subscription_id, customer_id=customer)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connection.close()

    handler = threading.Thread(target=handle_an_event)
    handler.start()
    try:
        assert billing.fake.holding.wait(30), "the handler never asked Stripe"
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '5s'")
            run_reserve(workspace_id=billing.world.workspace_a.pk)  # not blocked
    finally:
        billing.fake.release()
        handler.join(30)
    assert errors == []
    assert billing.row.runs_used == 1


def _triggers() -> list[WebhookEventTrigger]:
    return list(WebhookEventTrigger.objects.order_by("pk"))


def test_the_view_answers_before_processing_and_a_worker_applies_it(billing: Billing) -> None:
    """The delivery is stored and acknowledged; nothing is processed until a worker runs (a
    real Celery worker, started afterwards, on the messages the view queued)."""
    billing.fake.hold_events = True
    billing.subscribe("pro")
    events = billing.fake.flush_events()
    _all_delivered(billing.fake)  # every delivery answered 200 ...
    triggers = _triggers()
    assert len(triggers) == len(events)
    assert all(t.valid and not t.processed and t.event_id is None for t in triggers)
    assert not DjstripeEvent.objects.exists()
    workspace_id = billing.world.workspace_a.pk
    assert billing.row_of(workspace_id).plan.key == "free"  # ... and nothing is applied yet

    env = {
        **worker_environment(),
        "STRIPE_TEST_SECRET_KEY": KEY,
        "STRIPE_API_BASE": billing.fake.base_url,
        "BILLING_QUOTAS": "true",
    }
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"),
        ],
        env=env,
    )
    try:
        # The solo worker takes its messages in order: one more, whose result we wait for
        # (with a deadline), comes back after every delivery's.
        last = current_app.send_task(PROCESS_TASK, ignore_result=False)
        last.get(timeout=60)
        assert not WebhookEventTrigger.objects.filter(processed=False).exists()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    row = billing.row_of(workspace_id)
    assert (row.plan.key, row.status) == ("pro", WorkspacePlan.Status.ACTIVE)
    assert DjstripeEvent.objects.count() == len(events)
    assert not WebhookEventTrigger.objects.exclude(exception="").exists()


def test_a_delivery_whose_message_was_lost_is_processed_by_the_sweep(billing: Billing) -> None:
    billing.fake.hold_events = True
    billing.subscribe("pro")
    billing.fake.flush_events()
    _all_delivered(billing.fake)
    app.control.purge()  # the broker lost the messages the view queued
    assert billing.row_of(billing.world.workspace_a.pk).plan.key == "free"

    taken = process_webhooks.apply().get()  # what beat sends every minute, without a trigger id
    assert taken == len(_triggers())
    assert all(t.processed for t in _triggers())
    assert billing.row_of(billing.world.workspace_a.pk).plan.key == "pro"


def test_a_failing_delivery_blocks_no_other_and_is_retried_after_its_backoff(
    billing: Billing,
) -> None:
    world = billing.world
    billing.fake.hold_events = True
    first = billing.subscribe("pro", workspace_id=world.workspace_a.pk)
    billing.subscribe("team", workspace_id=world.workspace_b.pk)
    billing.fake.flush_events()
    _all_delivered(billing.fake)
    # Stripe cannot find A's subscription for now (404 on every read of it)
    missing = billing.fake.objects.pop(first)

    report = webhooks_drain()
    assert report.claimed == len(_triggers())
    assert report.failed > 0
    assert billing.row_of(world.workspace_b.pk).plan.key == "team"  # B is not held up
    assert billing.row_of(world.workspace_a.pk).plan.key == "free"
    failed = [t for t in _triggers() if t.exception]
    assert failed
    assert all(not t.processed and t.traceback for t in failed)
    assert all(first in t.body for t in failed)

    # Stripe finds it again; nothing is tried before the backoff has passed
    billing.fake.objects[first] = missing
    assert webhooks_drain().claimed == 0
    report = webhooks_drain(now=timezone.now() + RETRY_BASE)
    assert (report.claimed, report.failed) == (len(failed), 0)
    assert all(t.processed and not t.exception for t in _triggers())
    row = billing.row_of(world.workspace_a.pk)
    assert (row.plan.key, row.stripe_subscription_id) == ("pro", first)


def test_the_same_event_taken_by_two_drains_at_once_is_applied_once(
    committed_world: World, live_server: Any, settings: Any
) -> None:
    """Every event delivered twice; two drains run at once, each with its own connection.
    Whichever takes a copy second finds the Event stored (or waits for the first drain's
    insert and then finds it) and only marks its copy processed."""
    with FakeStripe(deliver_times=2, hold_events=True) as fake:
        billing = _start(fake, committed_world, live_server, settings)
        subscription_id = billing.subscribe("pro")
        billing.settle()
        mail.outbox.clear()
        billing.fake.close_period(subscription_id, fail=True)
        events = billing.fake.flush_events()
        _all_delivered(billing.fake)
        assert len(_triggers()) == 2 * DjstripeEvent.objects.count() + 2 * len(events)

        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def drain() -> None:
            try:
                start.wait(10)
                webhooks_drain(batch_size=1)  # one copy each, at the same moment
                while webhooks_drain().claimed:
                    pass
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=drain) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert all(t.processed and not t.exception for t in _triggers())
        assert DjstripeEvent.objects.count() * 2 == len(_triggers())
        row = billing.row
        assert row.status == WorkspacePlan.Status.PAST_DUE
        assert len(mail.outbox) == 1  # the payment failure is applied (and mailed) once
    assert fake.server_errors == []


def test_events_about_one_object_in_a_batch_have_it_read_from_stripe_once(
    billing: Billing,
) -> None:
    """dj-stripe's handlers re-read the object from Stripe: of a batch's events about one
    subscription, the last one's handlers do it, and our sync reads it once more; every event
    is still stored, and the plan row ends as Stripe has it. `invoice.paid` is never left out
    (receivers act on its type), so a period's close reads the invoice for it too."""
    subscription_id = billing.subscribe("pro")
    billing.fake.hold_events = True
    for n in range(3):
        billing.client.v1.subscriptions.update(subscription_id, params={"metadata": {"n": n}})
    events = billing.fake.flush_events()
    about = [e for e in events if e["data"]["object"]["id"] == subscription_id]
    assert len(about) == 3
    before = len(billing.fake.requests)

    row = billing.row  # processed
    reads = [
        r
        for r in billing.fake.requests[before:]
        if r.method == "GET" and r.path == f"/v1/subscriptions/{subscription_id}"
    ]
    assert len(reads) == 2  # dj-stripe's handlers once, our sync once: not 3 + 1
    assert DjstripeEvent.objects.filter(id__in=[e["id"] for e in about]).count() == 3
    assert all(t.processed and not t.exception for t in _triggers())
    mirrored = DjstripeSubscription.objects.get(id=subscription_id).stripe_data
    assert mirrored["metadata"] == billing.fake.get(subscription_id)["metadata"]
    assert row.plan.key == "pro"

    invoice = billing.fake.close_period(subscription_id)
    assert invoice is not None
    billing.fake.flush_events()
    assert (
        billing.row.current_period_end.timestamp()
        == (billing.fake.get(subscription_id)["items"]["data"][0]["current_period_end"])
    )
    assert DjstripeInvoice.objects.get(id=invoice["id"]).status == "paid"


def _mirror_reads(fake: FakeStripe, since: int, subscription_id: str) -> int:
    """dj-stripe's re-reads of the subscription (ours expand its latest invoice)."""
    return sum(
        1
        for r in fake.requests[since:]
        if r.method == "GET"
        and r.path == f"/v1/subscriptions/{subscription_id}"
        and "expand" not in r.body
    )


def test_the_plan_follows_the_webhooks_before_dj_stripes_mirror_is_refreshed(
    billing: Billing,
) -> None:
    """The webhooks' hot path stores each event and applies it to the workspace; dj-stripe's
    own tables (the billing page's invoice list) are refreshed after it, once per object."""
    billing.fake.hold_events = True
    subscription_id = billing.subscribe("pro")
    for n in range(3):
        billing.client.v1.subscriptions.update(subscription_id, params={"metadata": {"n": n}})
    events = billing.fake.flush_events()
    about = [e for e in events if e["data"]["object"]["id"] == subscription_id]
    assert len(about) >= 4  # created, and three updates
    before = len(billing.fake.requests)

    while webhooks_drain().claimed:
        pass
    row = billing.row_of(billing.world.workspace_a.pk)
    assert (row.plan.key, row.stripe_subscription_id) == ("pro", subscription_id)
    assert all(t.processed and not t.exception for t in _triggers())
    assert not DjstripeSubscription.objects.filter(id=subscription_id).exists()
    assert _mirror_reads(billing.fake, before, subscription_id) == 0
    assert StripeMirrorSync.objects.filter(key=f"subscription:{subscription_id}").count() == 1
    while mirror_drain():
        pass
    assert not StripeMirrorSync.objects.exists()
    mirrored = DjstripeSubscription.objects.get(id=subscription_id).stripe_data
    assert mirrored["metadata"]["n"] == "2"
    assert _mirror_reads(billing.fake, before, subscription_id) == 1  # not one per event
    assert DjstripeEvent.objects.filter(id__in=[e["id"] for e in events]).count() == len(events)


def test_a_failing_mirror_refresh_is_shown_and_retried_after_its_backoff(
    billing: Billing, admin_client: Any
) -> None:
    subscription_id = billing.subscribe("pro")
    billing.client.v1.subscriptions.update(subscription_id, params={"metadata": {"n": "1"}})
    while webhooks_drain().claimed:
        pass
    billing.fake.fail_next(f"/v1/subscriptions/{subscription_id}", status=500, times=3)
    assert mirror_drain() == 1
    (row,) = StripeMirrorSync.objects.all()
    assert row.attempts == 1
    assert "error" in row.last_error.lower()
    page = admin_client.get("/admin/billing/stripemirrorsync/")
    assert page.status_code == 200
    assert f"subscription:{subscription_id}" in page.text
    assert mirror_drain() == 0  # waiting out its backoff
    assert "n" not in DjstripeSubscription.objects.get(id=subscription_id).stripe_data["metadata"]

    later = timezone.now() + timedelta(hours=1)
    while mirror_drain(now=later):
        later += timedelta(hours=1)
    assert not StripeMirrorSync.objects.exists()
    mirrored = DjstripeSubscription.objects.get(id=subscription_id).stripe_data
    assert mirrored["metadata"]["n"] == "1"
    assert billing.row.plan.key == "pro"  # the plan never waited on the mirror


def test_an_event_arriving_during_its_objects_refresh_has_it_refreshed_again(
    billing: Billing,
) -> None:
    """A refresh re-reads Stripe; an event that comes while it is in flight may be newer than
    what it read, so the object is refreshed again, and the webhook waited on nothing."""
    subscription_id = billing.subscribe("pro")
    billing.client.v1.subscriptions.update(subscription_id, params={"metadata": {"n": "1"}})
    while webhooks_drain().claimed:
        pass
    billing.fake.hold_after(f"/v1/subscriptions/{subscription_id}", 0)
    refreshing = threading.Thread(target=_drain_mirror_in_thread)
    refreshing.start()
    try:
        assert billing.fake.holding.wait(10), "the refresh did not read Stripe"
        billing.client.v1.subscriptions.update(subscription_id, params={"metadata": {"n": "2"}})
        while webhooks_drain().claimed:  # not blocked by the refresh in flight
            pass
    finally:
        billing.fake.release()
        refreshing.join(10)
    assert not refreshing.is_alive()
    held = DjstripeSubscription.objects.get(id=subscription_id).stripe_data
    assert held["metadata"]["n"] == "1"  # what the held read saw
    assert StripeMirrorSync.objects.filter(key=f"subscription:{subscription_id}").exists()
    while mirror_drain():
        pass
    mirrored = DjstripeSubscription.objects.get(id=subscription_id).stripe_data
    assert mirrored["metadata"]["n"] == "2"


def _drain_mirror_in_thread() -> None:
    try:
        mirror_drain()
    finally:
        connection.close()
