"""Metered overage (billing/meter.py): every billable ledger row gets one meter outbox row in
the transaction that records its cost; the flusher sends them to Stripe Billing Meters (the
loopback fake, through the real SDK) with the row's identifier and idempotency key, backs off
on 5xx, fails at once on a 400, and a flusher killed mid-batch loses nothing and counts
nothing twice. Owners and admins are mailed at 80 % and 100 % of the included AI spend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import User
from agents.embeddings import get_embedder
from agents.gateway.calls import gateway_complete
from agents.models import UsageRecord
from agents.providers.base import ChatRequest, Message
from agents.services import agent_create, agent_run_start
from billing.meter import (
    AI_SPEND_EVENT,
    meter_flush,
    meter_retry,
    micro_usd,
)
from billing.models import MeterOutbox, ModelPrice, Plan, WorkspacePlan
from billing.stripe_client import stripe_client
from billing.stripe_sync import plans_sync
from billing.tasks import flush_meter
from tests.fakes import FakeOpenAI, FakeStripe
from tests.helpers.billing import bill, on_overage_plan
from tests.helpers.notifications import deliver_emails
from tests.helpers.personas import World, access_of, logged_in
from tests.helpers.processes import worker_environment

EVENTS = "/v1/billing/meter_events"


@pytest.fixture(autouse=True)
def billing_on(settings: Any) -> None:
    """A Stripe key (`fake_stripe` also points the SDK at the fake): without one nothing is
    metered."""
    settings.STRIPE_TEST_SECRET_KEY = "sk_test_platform"


ROOT = Path(__file__).resolve().parents[2]


def sent_events(fake: FakeStripe) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path == EVENTS]


ASK = ChatRequest(model="", max_tokens=50, messages=(Message(role="user", content="Hi"),))
# $3 + $15 per million tokens (register_fake_model): 1000 in + 200 out = $0.006
PRICED = {"prompt_tokens": 1000, "completion_tokens": 200}


@pytest.mark.django_db
def test_a_priced_model_call_queues_one_meter_event_in_the_ledger_transaction(
    world: World, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    on_overage_plan(world.workspace_a)
    fake_openai.queue(text="Done", usage=PRICED)
    gateway_complete(model=fake_model, request=ASK)

    record = UsageRecord.objects.get()
    row = MeterOutbox.objects.get()
    assert record.cost_usd == Decimal("0.006")
    assert (row.event_name, row.value) == (AI_SPEND_EVENT, 6000)  # micro-dollars
    assert (row.ledger_schema, row.ledger_id) == (world.workspace_a.schema_name, record.pk)
    assert row.occurred_at == record.created_at
    assert (row.stripe_customer_id, row.status, row.workspace_id) == (
        "cus_a",
        MeterOutbox.Status.PENDING,
        world.workspace_a.pk,
    )

    # A ledger row that rolls back takes its outbox row with it.
    fake_openai.queue(text="Again", usage=PRICED)
    inside: list[int] = []

    def call_then_fail() -> None:
        with transaction.atomic():
            gateway_complete(model=fake_model, request=ASK)
            inside.append(MeterOutbox.objects.count())
            raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):
        call_then_fail()
    assert inside == [2]
    assert (UsageRecord.objects.count(), MeterOutbox.objects.count()) == (1, 1)


@pytest.mark.django_db
def test_a_priced_embedding_request_is_metered_too(
    world: World, fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.LLM_PLATFORM_BASE_URLS = {"openai": fake_openai.base_url}
    settings.LLM_PLATFORM_KEYS = {"openai": "sk-platform-0000"}
    ModelPrice.objects.create(
        provider="openai",
        model="text-embedding-3-small",
        input_per_mtok=Decimal(100),
        output_per_mtok=Decimal(0),
    )
    on_overage_plan(world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        get_embedder("openai").embed(["Refunds are paid within 14 days of the request."])
        record = UsageRecord.objects.get(purpose=UsageRecord.Purpose.EMBEDDING)
    row = MeterOutbox.objects.get()
    assert record.cost_usd > 0
    assert (row.ledger_id, row.value) == (record.pk, micro_usd(record.cost_usd))


@pytest.mark.django_db
def test_nothing_is_metered_without_an_overage_plan_a_customer_a_cost_or_billing(
    world: World, fake_openai: FakeOpenAI, fake_model: str, settings: Any
) -> None:
    fake_openai.queue(text="Free plan", usage=PRICED)
    gateway_complete(model=fake_model, request=ASK)  # the default plan bills no overage
    on_overage_plan(world.workspace_a, customer="")
    fake_openai.queue(text="No customer yet", usage=PRICED)
    gateway_complete(model=fake_model, request=ASK)
    on_overage_plan(world.workspace_a)
    gateway_complete(model="offline:demo", request=ASK)  # unpriced: costs nothing
    settings.STRIPE_TEST_SECRET_KEY = ""
    fake_openai.queue(text="Billing off", usage=PRICED)
    gateway_complete(model=fake_model, request=ASK)
    assert UsageRecord.objects.count() == 4
    assert MeterOutbox.objects.count() == 0


@pytest.mark.django_db
def test_runs_past_the_allowance_on_an_overage_plan_are_not_metered(
    world: World, settings: Any
) -> None:
    """Decision: an overage plan bills AI spend beyond its allowance; runs themselves are not
    billed (docs/billing.md, Metered overage)."""
    settings.BILLING_QUOTAS = True
    plan = on_overage_plan(world.workspace_a)
    Plan.objects.filter(pk=plan.pk).update(runs_per_month=1)
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(access=access, name="Helper", model="offline:demo")
        for _ in range(3):
            agent_run_start(access=access, agent_id=agent.pk, input="hi")
    assert WorkspacePlan.objects.get(workspace=world.workspace_a).runs_used == 3
    assert MeterOutbox.objects.count() == 0


@pytest.fixture
def metered(world: World, fake_stripe: FakeStripe) -> FakeStripe:
    """Workspace A on an overage plan with a customer; the meter exists in the fake."""
    on_overage_plan(world.workspace_a)
    plans_sync(stripe_client())
    return fake_stripe


@pytest.mark.django_db
def test_the_flusher_sends_each_row_with_its_identifier_and_idempotency_key(
    world: World, metered: FakeStripe
) -> None:
    rows = [bill(world.workspace_a, "0.012345"), bill(world.workspace_a, "1.5")]

    report = meter_flush(stripe_client())

    assert (report.sent, report.retrying, report.failed) == (2, 0, 0)
    requests = sent_events(metered)
    assert [r.body["identifier"] for r in requests] == [f"meter-outbox-{r.pk}" for r in rows]
    assert [r.headers["idempotency-key"] for r in requests] == [
        f"meter-outbox-{r.pk}" for r in rows
    ]
    assert [r.body["payload"] for r in requests] == [
        {"stripe_customer_id": "cus_a", "value": "12345"},
        {"stripe_customer_id": "cus_a", "value": "1500000"},
    ]
    assert {r.body["event_name"] for r in requests} == {AI_SPEND_EVENT}
    assert requests[0].body["timestamp"] == str(int(rows[0].occurred_at.timestamp()))
    for row in rows:
        row.refresh_from_db()
        assert (row.status, row.attempts, row.last_error) == (MeterOutbox.Status.SENT, 1, "")
        assert row.sent_at is not None
    assert meter_flush(stripe_client()).sent == 0  # nothing left to send
    assert len(sent_events(metered)) == 2


@pytest.mark.django_db
def test_the_periods_invoice_charges_only_the_ai_spend_beyond_the_allowance(
    world: World, metered: FakeStripe
) -> None:
    client = stripe_client()
    keys = ["plan_pro_month", "plan_pro_overage"]
    prices = {
        p.lookup_key: p.id
        for p in client.v1.prices.list(params={"lookup_keys": keys, "limit": 10}).data
    }
    customer = client.v1.customers.create(params={"email": "owner@alpha.test"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "success_url": "http://127.0.0.1/done",
            "line_items": [
                {"price": prices["plan_pro_month"], "quantity": 1},
                {"price": prices["plan_pro_overage"]},
            ],
        }
    )
    subscription = metered.complete_checkout(session.id)
    on_overage_plan(world.workspace_a, customer=customer.id)  # Pro includes $20 of AI spend
    bill(world.workspace_a, "12.5")
    bill(world.workspace_a, "9")  # $21.50 in all: $1.50 beyond the allowance
    assert meter_flush(client).sent == 2

    invoice = metered.close_period(subscription["id"])

    assert invoice is not None
    assert sorted(line["amount"] for line in invoice["lines"]["data"]) == [150, 2900]


@pytest.mark.django_db
def test_a_5xx_backs_off_and_the_row_is_sent_later(
    world: World, metered: FakeStripe, settings: Any
) -> None:
    settings.METER_RETRY_BASE_SECONDS = 60
    first, second = bill(world.workspace_a, "0.5"), bill(world.workspace_a, "0.25")
    metered.fail_next(EVENTS, status=503, times=3)  # the SDK's own two retries fail too
    before = timezone.now()

    report = meter_flush(stripe_client())

    assert (report.sent, report.retrying) == (0, 1)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.attempts) == (MeterOutbox.Status.PENDING, 1)
    assert "503" in first.last_error
    assert first.next_attempt_at >= before + timedelta(seconds=60)  # not due yet
    assert second.attempts == 0  # the batch stopped: Stripe was failing
    assert meter_flush(stripe_client()).sent == 1  # the second; the first is not due yet
    first.refresh_from_db()
    assert (first.status, first.attempts) == (MeterOutbox.Status.PENDING, 1)

    MeterOutbox.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    assert meter_flush(stripe_client()).sent == 1
    first.refresh_from_db()
    assert (first.status, first.attempts, first.last_error) == (MeterOutbox.Status.SENT, 2, "")

    # A row that keeps failing gives up after METER_MAX_ATTEMPTS, naming the last error.
    settings.METER_MAX_ATTEMPTS, settings.METER_RETRY_BASE_SECONDS = 2, 0
    third = bill(world.workspace_a, "0.1")
    metered.fail_next(EVENTS, status=500, times=6)
    meter_flush(stripe_client())
    meter_flush(stripe_client())
    third.refresh_from_db()
    assert (third.status, third.attempts) == (MeterOutbox.Status.FAILED, 2)
    assert "Stripe (500)" in third.last_error


@pytest.mark.django_db
def test_a_400_fails_the_row_at_once_with_stripes_message_and_the_admin_can_retry_it(
    world: World, metered: FakeStripe
) -> None:
    refused, fine = bill(world.workspace_a, "0.5"), bill(world.workspace_a, "0.25")
    metered.fail_next(EVENTS, status=400, message="No such customer: 'cus_a'")

    report = meter_flush(stripe_client())

    assert (report.sent, report.failed) == (1, 1)
    refused.refresh_from_db()
    assert (refused.status, refused.attempts) == (MeterOutbox.Status.FAILED, 1)
    assert refused.last_error == "Stripe (400): No such customer: 'cus_a'"
    fine.refresh_from_db()
    assert fine.status == MeterOutbox.Status.SENT  # one refusal does not stop the batch

    assert meter_retry(ids=[refused.pk, fine.pk]) == 1  # only failed rows go back
    assert meter_flush(stripe_client()).sent == 1
    refused.refresh_from_db()
    assert (refused.status, refused.last_error) == (MeterOutbox.Status.SENT, "")


@pytest.mark.django_db
def test_a_row_older_than_stripes_35_days_fails_unsent_and_an_event_stripe_has_counts_as_sent(
    world: World, metered: FakeStripe
) -> None:
    old = bill(world.workspace_a, "0.5", at=timezone.now() - timedelta(days=36))
    known = bill(world.workspace_a, "0.25")
    # Stripe already holds `known`'s event (sent under another idempotency key).
    stripe_client().v1.billing.meter_events.create(
        params={
            "event_name": AI_SPEND_EVENT,
            "identifier": known.identifier,
            "payload": {"stripe_customer_id": "cus_a", "value": "250000"},
        }
    )

    report = meter_flush(stripe_client())

    assert (report.sent, report.failed) == (1, 1)
    old.refresh_from_db()
    assert old.status == MeterOutbox.Status.FAILED
    assert "past 35 days only" in old.last_error
    assert [r.body["identifier"] for r in sent_events(metered)] == [known.identifier] * 2
    known.refresh_from_db()
    assert known.status == MeterOutbox.Status.SENT
    assert len(metered.meter_events) == 1  # counted once


@pytest.mark.django_db
def test_a_row_ahead_of_stripes_clock_waits_and_is_retried(
    world: World, metered: FakeStripe
) -> None:
    row = bill(world.workspace_a, "0.5")
    metered.clock_offset = -600  # Stripe's clock ten minutes behind ours

    report = meter_flush(stripe_client())

    assert (report.sent, report.retrying, report.failed) == (0, 1, 0)
    row.refresh_from_db()
    assert row.status == MeterOutbox.Status.PENDING
    assert "must not be more than 5 minutes in the future" in row.last_error


def test_two_flushers_at_once_never_send_the_same_row(
    committed_world: World, fake_stripe: FakeStripe
) -> None:
    workspace = committed_world.workspace_a
    on_overage_plan(workspace)
    plans_sync(stripe_client())
    rows = [bill(workspace, f"0.{n}") for n in range(1, 4)]
    fake_stripe.hold_after(EVENTS, 0)  # the first flusher waits on its first answer
    first: list[int] = []

    def flush_two() -> None:
        try:
            first.append(meter_flush(stripe_client(), batch_size=2).sent)
        finally:
            connection.close()

    thread = threading.Thread(target=flush_two)
    thread.start()
    try:
        assert fake_stripe.holding.wait(30), "the first flusher never reached Stripe"
        # while the first holds rows 1 and 2, a second flusher skips them and sends row 3
        second = meter_flush(stripe_client())
    finally:
        fake_stripe.release()
        thread.join(timeout=30)

    assert (first, second.sent) == ([2], 1)
    posted = [r.body["identifier"] for r in sent_events(fake_stripe)]
    assert sorted(posted) == sorted(row.identifier for row in rows)  # each once
    assert MeterOutbox.objects.filter(status=MeterOutbox.Status.SENT).count() == 3


def test_a_flusher_killed_mid_batch_is_resent_and_stripe_counts_each_row_once(
    committed_world: World, fake_stripe: FakeStripe
) -> None:
    workspace = committed_world.workspace_a
    on_overage_plan(workspace)
    plans_sync(stripe_client())
    rows = [bill(workspace, f"0.{n}1") for n in range(1, 7)]
    # Given Stripe accepts three events, then accepts the fourth but holds its answer
    fake_stripe.hold_after(EVENTS, 3)
    env = {
        **worker_environment(),
        "STRIPE_TEST_SECRET_KEY": "sk_test_platform",
        "STRIPE_API_BASE": fake_stripe.base_url,
    }
    flusher = subprocess.Popen(
        [sys.executable, "manage.py", "billing_flush_meter", "--batch-size", "10"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        # the fake's event is set when it holds the answer; a flusher that died says why
        while not fake_stripe.holding.wait(0.1):
            assert flusher.poll() is None, flusher.stderr.read() if flusher.stderr else ""
            assert time.monotonic() < deadline, "the flusher never reached the held request"
        # when the flusher is killed before it heard the answer (and marked anything sent)
        os.kill(flusher.pid, signal.SIGKILL)
        flusher.wait(timeout=10)
    finally:
        if flusher.poll() is None:
            flusher.kill()
        fake_stripe.release()
    assert len(fake_stripe.meter_events) == 4
    assert not MeterOutbox.objects.filter(status=MeterOutbox.Status.SENT).exists()

    # then the database drops the dead flusher's locks (waited for by taking them, with a
    # timeout), and the next flush sends everything
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '30s'")
        assert len(MeterOutbox.objects.select_for_update().all()) == len(rows)
    report = meter_flush(stripe_client())

    assert report.sent == len(rows)
    identifiers = [event["identifier"] for event in fake_stripe.meter_events]
    assert sorted(identifiers) == sorted(row.identifier for row in rows)  # none twice
    replayed = sent_events(fake_stripe)
    assert len(replayed) == 10  # four sent by the killed flusher, six by the second
    with schema_context(workspace.schema_name):
        ledger = sum(r.cost_usd for r in UsageRecord.objects.all())
    stripe_total = sum(int(e["payload"]["value"]) for e in fake_stripe.meter_events)
    assert stripe_total == micro_usd(ledger)


@pytest.mark.django_db
def test_owners_and_admins_are_mailed_once_at_80_and_at_100_percent_of_the_ai_spend(
    world: World,
    settings: Any,
    fake_openai: FakeOpenAI,
    fake_model: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.BILLING_QUOTAS = True
    on_overage_plan(world.workspace_a, included="0.01")
    # 1500 in + 267 out = $0.008505 a call: the first reaches 85 %, the second 170 %
    usage = {"prompt_tokens": 1500, "completion_tokens": 267}
    sent: list[int] = []
    for _ in range(3):
        fake_openai.queue(text="Done", usage=usage)
        with django_capture_on_commit_callbacks(execute=True):
            gateway_complete(model=fake_model, request=ASK)
        deliver_emails()  # the worker's part: notification emails are sent by a task
        sent.append(len(mail.outbox))
    assert sent == [1, 2, 2]
    at_80, at_100 = mail.outbox
    assert "80% of its plan's AI spend" in at_80.subject
    assert "$0.008505 of the $0.01 of AI spend its Pro plan includes" in at_80.body
    assert "100% of its plan's AI spend" in at_100.subject
    assert "billed as overage" in at_100.body
    assert at_80.to == ["owner@alpha.test"]
    row = WorkspacePlan.objects.get(workspace=world.workspace_a)
    assert row.ai_spend_warned_percent == 100
    assert row.ai_spend_warned_period == row.current_period_start


@pytest.mark.django_db
def test_staff_see_the_outbox_by_status_and_retry_failed_rows(world: World) -> None:
    on_overage_plan(world.workspace_a)
    failed, pending = bill(world.workspace_a, "0.5"), bill(world.workspace_a, "0.25")
    MeterOutbox.objects.filter(pk=failed.pk).update(
        status=MeterOutbox.Status.FAILED, attempts=1, last_error="Stripe (400): No such customer"
    )
    staff = User.objects.create_superuser(email="staff@platform.test", password="x")
    client = logged_in(staff)
    url = reverse("admin:billing_meteroutbox_changelist")

    listed = client.get(url, {"status__exact": "failed"}).content.decode()

    assert "Stripe (400): No such customer" in listed
    assert "Alpha Inc" in listed
    assert client.get(reverse("admin:billing_meteroutbox_add")).status_code == 403
    done = client.post(
        url, {"action": "retry_now", "_selected_action": [failed.pk, pending.pk]}, follow=True
    )
    assert "1 failed row(s) are pending again" in done.content.decode()
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (MeterOutbox.Status.PENDING, 0)


@pytest.mark.django_db
def test_the_periodic_task_flushes_every_30_seconds_and_rests_while_billing_is_off(
    world: World, metered: FakeStripe, settings: Any
) -> None:
    beat = settings.CELERY_BEAT_SCHEDULE["billing-flush-meter"]
    assert (beat["task"], beat["schedule"]) == ("billing.flush_meter", 30.0)
    row = bill(world.workspace_a, "0.5")

    settings.STRIPE_TEST_SECRET_KEY = ""
    assert flush_meter() == 0
    assert sent_events(metered) == []

    settings.STRIPE_TEST_SECRET_KEY = "sk_test_platform"
    assert flush_meter() == 1
    row.refresh_from_db()
    assert row.status == MeterOutbox.Status.SENT


@pytest.mark.parametrize("size", [0, -3])
def test_the_flush_command_refuses_a_batch_size_below_one(size: int) -> None:
    with pytest.raises(CommandError, match=f"--batch-size must be at least 1 \\(got {size}\\)"):
        call_command("billing_flush_meter", batch_size=size)
