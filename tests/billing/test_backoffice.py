"""The back-office, through the admin's own pages as staff: grant AI-spend credit (it raises the
period's allowance and is audited), extend a trial, comp a plan (and its end), the webhook event
log's replay; bad input is refused with the field named; people who are not staff never reach
these pages."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context
from djstripe.models import Customer, Event, Invoice, WebhookEventTrigger
from djstripe.signals import WEBHOOK_SIGNALS

from accounts.models import User
from billing import usage
from billing.backoffice import comps_expire
from billing.models import CreditGrant, Plan, WorkspacePlan
from billing.plans import default_plan, workspace_plan
from billing.quotas import ai_spend_allowance, plan_view
from billing.usage import billing_summary
from tenants import audit
from tenants.models import AuditEvent
from tests.helpers.personas import World, access_of, logged_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> User:
    return User.objects.create_superuser(email="staff@platform.test", password="x")


@pytest.fixture
def staff_client(staff: User) -> Client:
    return logged_in(staff)


@pytest.fixture
def row(world: World) -> WorkspacePlan:
    return workspace_plan(workspace=world.workspace_a)


def _url(row: WorkspacePlan, action: str) -> str:
    return reverse(f"admin:billing_workspaceplan_{action}", args=[row.pk])


def test_granting_credit_raises_the_periods_allowance_and_is_audited(
    settings: Any, world: World, staff: User, staff_client: Client, row: WorkspacePlan
) -> None:
    settings.BILLING_QUOTAS = True
    schema = world.workspace_a.schema_name
    before = ai_spend_allowance(plan_view(schema_name=schema))
    assert before is not None

    page = staff_client.get(_url(row, "grant_credit"))
    assert page.status_code == 200
    assert "Amount ($)" in page.content.decode()
    answer = staff_client.post(
        _url(row, "grant_credit"), {"amount_usd": "12.50", "reason": "Outage on 3 Dec"}
    )

    assert answer.status_code == 302
    after = ai_spend_allowance(plan_view(schema_name=schema))
    assert after is not None
    assert after.included_usd == before.included_usd + Decimal("12.50")
    grant = CreditGrant.objects.get(workspace=world.workspace_a)
    assert (grant.granted_by, grant.reason) == (staff, "Outage on 3 Dec")
    assert grant.period_start == row.current_period_start
    event = AuditEvent.objects.get(action=audit.Action.CREDIT_GRANTED)
    assert event.actor == staff
    assert event.workspace == world.workspace_a
    assert event.metadata["old"] == {"ai_spend_allowance_usd": str(before.included_usd)}
    assert event.metadata["new"] == {"ai_spend_allowance_usd": str(after.included_usd)}
    assert event.metadata["reason"] == "Outage on 3 Dec"
    # the other workspace's allowance is untouched
    other = ai_spend_allowance(plan_view(schema_name=world.workspace_b.schema_name))
    assert other is not None
    assert other.included_usd == before.included_usd
    # the owner's Billing page and API count the credit in the AI-spend allowance, as calls do
    with schema_context(schema):
        summary = billing_summary(access=access_of(world.owner, world.workspace_a))
    (spend,) = [a for a in summary.allowances if a.key == usage.AI_SPEND]
    assert spend.limit == after.included_usd
    # the change page lists the grant; the ledger cannot be edited or deleted
    change = staff_client.get(reverse("admin:billing_workspaceplan_change", args=[row.pk]))
    assert "Outage on 3 Dec" in change.content.decode()
    assert 'name="_save"' not in change.content.decode()  # read-only: changes are actions
    assert _url(row, "comp_plan") in change.content.decode()
    ledger = reverse("admin:billing_creditgrant_change", args=[grant.pk])
    assert staff_client.post(ledger, {"amount_usd": "999", "reason": "x"}).status_code == 403
    delete = reverse("admin:billing_creditgrant_delete", args=[grant.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        ("-5", "Amount: enter dollars between $0.01"),
        ("0", "Amount: enter dollars between $0.01"),
        ("20000", "Amount: enter dollars between $0.01"),
        ("ten", "Enter a number."),
        ("1.234", "no more than 2 decimal places"),
        ("", "This field is required."),
    ],
)
def test_bad_amounts_are_refused_naming_the_field(
    staff_client: Client, row: WorkspacePlan, amount: str, says: str
) -> None:
    answer = staff_client.post(_url(row, "grant_credit"), {"amount_usd": amount, "reason": "x"})

    assert answer.status_code == 200
    errors = answer.context["form"].errors
    assert list(errors) == ["amount_usd"]
    assert says in errors["amount_usd"][0]
    assert says in answer.content.decode()
    assert not CreditGrant.objects.exists()
    assert not AuditEvent.objects.filter(action=audit.Action.CREDIT_GRANTED).exists()


def test_a_grant_needs_a_reason(staff_client: Client, row: WorkspacePlan) -> None:
    answer = staff_client.post(_url(row, "grant_credit"), {"amount_usd": "5", "reason": "  "})
    assert answer.status_code == 200
    assert list(answer.context["form"].errors) == ["reason"]
    assert not CreditGrant.objects.exists()


def test_extending_a_trial_moves_its_end_and_is_audited(
    world: World, staff: User, staff_client: Client, row: WorkspacePlan
) -> None:
    ends = timezone.now() + timedelta(days=3)
    WorkspacePlan.objects.filter(pk=row.pk).update(
        status=WorkspacePlan.Status.TRIALING, trial_ends_at=ends
    )

    answer = staff_client.post(_url(row, "extend_trial"), {"days": "10", "reason": "Pilot"})

    assert answer.status_code == 302
    row.refresh_from_db()
    assert row.trial_ends_at == ends + timedelta(days=10)
    assert row.status == WorkspacePlan.Status.TRIALING
    event = AuditEvent.objects.get(action=audit.Action.TRIAL_EXTENDED)
    assert (event.actor, event.workspace) == (staff, world.workspace_a)
    assert event.metadata["old"]["trial_ends_at"] == ends.isoformat()
    assert event.metadata["new"]["trial_ends_at"] == row.trial_ends_at.isoformat()

    refused = staff_client.post(_url(row, "extend_trial"), {"days": "0", "reason": "Pilot"})
    assert list(refused.context["form"].errors) == ["days"]


def test_a_workspace_paying_through_stripe_has_its_trial_there(
    staff_client: Client, row: WorkspacePlan
) -> None:
    WorkspacePlan.objects.filter(pk=row.pk).update(stripe_subscription_id="sub_123")
    answer = staff_client.post(_url(row, "extend_trial"), {"days": "5", "reason": "Pilot"})
    assert answer.status_code == 200
    assert "sub_123" in " ".join(answer.context["form"].non_field_errors())
    assert not AuditEvent.objects.filter(action=audit.Action.TRIAL_EXTENDED).exists()


def test_comping_a_plan_changes_it_until_the_day_chosen_and_is_audited(
    world: World, staff: User, staff_client: Client, row: WorkspacePlan
) -> None:
    team = Plan.objects.create(key="team", name="Team", monthly_price_cents=9900)
    last_day = (timezone.localdate() + timedelta(days=30)).isoformat()

    answer = staff_client.post(
        _url(row, "comp_plan"), {"plan": team.pk, "until": last_day, "reason": "Partner"}
    )

    assert answer.status_code == 302
    row.refresh_from_db()
    assert (row.plan, row.comped, row.status) == (team, True, WorkspacePlan.Status.ACTIVE)
    assert row.comp_ends_at is not None
    assert timezone.localtime(row.comp_ends_at - timedelta(seconds=1)).date().isoformat() == (
        last_day
    )
    event = AuditEvent.objects.get(action=audit.Action.PLAN_COMPED)
    assert (event.actor, event.workspace) == (staff, world.workspace_a)
    assert event.metadata["old"]["plan"] == "free"
    assert event.metadata["new"]["plan"] == "team"
    assert event.metadata["reason"] == "Partner"

    # When the day has passed, the workspace is back on the default plan (audited too).
    assert comps_expire(now=row.comp_ends_at - timedelta(seconds=1)) == 0
    assert comps_expire(now=row.comp_ends_at) == 1
    row.refresh_from_db()
    assert (row.plan, row.comped, row.comp_ends_at) == (default_plan(), False, None)
    assert AuditEvent.objects.filter(action=audit.Action.COMP_ENDED, actor=None).count() == 1


def test_a_comp_cannot_end_in_the_past(staff_client: Client, row: WorkspacePlan) -> None:
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    answer = staff_client.post(
        _url(row, "comp_plan"),
        {"plan": row.plan_id, "until": yesterday, "reason": "Partner"},
    )
    assert answer.status_code == 200
    assert list(answer.context["form"].errors) == ["until"]
    assert "Until:" in answer.content.decode()


def test_the_list_shows_status_period_and_runs_against_the_allowance(
    staff_client: Client, row: WorkspacePlan
) -> None:
    WorkspacePlan.objects.filter(pk=row.pk).update(runs_used=7)
    page = staff_client.get(reverse("admin:billing_workspaceplan_changelist"), {"q": "alpha"})
    text = page.content.decode()
    assert f"7 / {row.plan.runs_per_month}" in text
    assert f"{row.current_period_start:%Y-%m-%d} – {row.current_period_end:%Y-%m-%d}" in text
    assert "Bravo Ltd" not in text


@pytest.mark.parametrize("action", ["grant_credit", "extend_trial", "comp_plan"])
def test_people_who_are_not_staff_cannot_reach_the_actions(
    world: World, row: WorkspacePlan, action: str
) -> None:
    for client in (Client(), logged_in(world.owner)):
        page = client.get(_url(row, action))
        assert page.status_code == 302
        assert page["Location"].startswith(reverse("admin:login"))
        posted = client.post(_url(row, action), {"amount_usd": "5", "days": "5", "reason": "x"})
        assert posted.status_code == 302
    assert not CreditGrant.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="billing.").exists()


def test_staff_without_the_change_permission_are_refused(world: World, row: WorkspacePlan) -> None:
    viewer = User.objects.create_user(email="viewer@platform.test", password="x", is_staff=True)
    answer = logged_in(viewer).post(_url(row, "grant_credit"), {"amount_usd": "5", "reason": "x"})
    assert answer.status_code == 403
    assert not CreditGrant.objects.exists()


def _trigger(event_id: str, *, valid: bool = True) -> WebhookEventTrigger:
    body = {"id": event_id, "object": "event", "type": "ping", "livemode": False, "data": {}}
    return WebhookEventTrigger.objects.create(
        remote_ip="127.0.0.1",
        headers={},
        body=json.dumps(body),
        valid=valid,
        processed=False,
        exception="boom",
    )


def test_the_webhook_log_shows_failed_events_and_refuses_to_replay_untrusted_ones(
    staff_client: Client,
) -> None:
    failed = _trigger("evt_failed")
    forged = _trigger("evt_forged", valid=False)

    log = staff_client.get(reverse("admin:billing_stripewebhook_changelist"))
    text = log.content.decode()
    assert "failed" in text
    assert "refused (signature)" in text

    answer = staff_client.post(
        reverse("admin:billing_stripewebhook_changelist"),
        {"action": "replay", "_selected_action": [forged.pk]},
        follow=True,
    )
    assert "failed signature validation" in answer.content.decode()
    forged.refresh_from_db()
    assert not forged.processed
    failed.refresh_from_db()
    assert failed.exception == "boom"  # not selected: untouched


def test_replaying_a_webhook_whose_event_exists_runs_its_handlers_again(
    staff_client: Client,
) -> None:
    event = Event.objects.create(
        id="evt_again", type="balance.available", livemode=False, api_version="", data={}
    )
    trigger = _trigger("evt_again")
    seen: list[str] = []

    def receiver(sender: Any, event: Event, **kwargs: Any) -> None:
        seen.append(event.id)

    signal = WEBHOOK_SIGNALS["balance.available"]  # no handler of dj-stripe's own
    signal.connect(receiver, weak=False)
    try:
        answer = staff_client.post(
            reverse("admin:billing_stripewebhook_changelist"),
            {"action": "replay", "_selected_action": [trigger.pk]},
            follow=True,
        )
    finally:
        signal.disconnect(receiver)

    assert [str(m) for m in answer.context["messages"]] == [f"Webhook {trigger.pk} processed."]
    assert seen == ["evt_again"]
    trigger.refresh_from_db()
    assert (trigger.processed, trigger.exception, trigger.event_id) == (True, "", event.id)


def test_staff_who_may_only_view_the_webhook_log_cannot_replay(world: World) -> None:
    viewer = User.objects.create_user(email="viewer@platform.test", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_stripewebhook"))
    trigger = _trigger("evt_viewer")
    client = logged_in(viewer)
    log = reverse("admin:billing_stripewebhook_changelist")
    assert client.get(log).status_code == 200

    client.post(log, {"action": "replay", "_selected_action": [trigger.pk]})

    trigger.refresh_from_db()
    assert (trigger.processed, trigger.exception) == (False, "boom")


def test_a_comp_that_ends_after_the_workspace_subscribed_keeps_the_paid_plan(
    staff: User, staff_client: Client, row: WorkspacePlan
) -> None:
    team = Plan.objects.create(key="team", name="Team", monthly_price_cents=9900)
    pro = Plan.objects.create(key="pro", name="Pro", monthly_price_cents=2900)
    last_day = (timezone.localdate() + timedelta(days=3)).isoformat()
    staff_client.post(
        _url(row, "comp_plan"), {"plan": team.pk, "until": last_day, "reason": "Partner"}
    )
    # then the owner subscribed to Pro (what the subscription webhook records)
    WorkspacePlan.objects.filter(pk=row.pk).update(plan=pro, stripe_subscription_id="sub_1")
    row.refresh_from_db()
    assert row.comp_ends_at is not None

    assert comps_expire(now=row.comp_ends_at) == 1

    row.refresh_from_db()
    assert (row.plan, row.comped, row.comp_ends_at) == (pro, False, None)
    ended = AuditEvent.objects.get(action=audit.Action.COMP_ENDED)
    assert "subscribed meanwhile" in ended.metadata["reason"]


def test_the_billing_section_lists_the_webhook_log_events_and_invoices(
    world: World, staff_client: Client
) -> None:
    index = staff_client.get(reverse("admin:app_list", args=["billing"])).content.decode()
    for name in ("Stripe webhooks", "Stripe events", "Stripe invoices", "Credit grants"):
        assert name in index
    customer = Customer.objects.create(id="cus_demo", livemode=False, stripe_data={})
    Invoice.objects.create(
        id="in_demo",
        customer=customer,
        livemode=False,
        stripe_data={
            "number": "FAKE-0042",
            "status": "paid",
            "total": 2900,
            "currency": "usd",
            "hosted_invoice_url": "https://invoice.stripe.test/in_demo",
        },
    )
    invoices = staff_client.get(reverse("admin:billing_stripeinvoice_changelist"))
    for shown in ("FAKE-0042", "paid", "29.00 USD", "https://invoice.stripe.test/in_demo"):
        assert shown in invoices.content.decode()
    for model in ("stripewebhook", "stripeevent", "stripeinvoice", "creditgrant"):
        assert staff_client.get(reverse(f"admin:billing_{model}_changelist")).status_code == 200
        assert (
            logged_in(world.owner).get(reverse(f"admin:billing_{model}_changelist")).status_code
            == 302
        )


def test_credit_is_refused_on_a_plan_that_bills_overage(
    world: World, staff_client: Client, row: WorkspacePlan
) -> None:
    Plan.objects.filter(pk=row.plan_id).update(allows_overage=True)
    answer = staff_client.post(_url(row, "grant_credit"), {"amount_usd": "5", "reason": "Sorry"})
    assert answer.status_code == 200  # the form again, with the error beside the amount
    assert "bills AI spend past its allowance as overage" in answer.content.decode()
    assert not CreditGrant.objects.exists()
