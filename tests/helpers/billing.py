"""Billing in tests: a workspace on a paid plan that allows overage, and billable ledger rows
with their meter outbox rows, written as the gateway writes them."""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django_tenants.utils import schema_context

from agents.models import UsageRecord
from billing.meter import ledger_cost_recorded, metered_customer
from billing.models import MeterOutbox, Plan
from billing.plans import workspace_plan
from billing.stripe_mirror import mirror_drain
from billing.webhooks import webhooks_drain
from tenants.models import Workspace


def on_overage_plan(workspace: Workspace, *, included: str = "20", customer: str = "cus_a") -> Plan:
    """`workspace` on a paid plan that allows overage, with a Stripe customer."""
    plan, _ = Plan.objects.get_or_create(
        key="pro",
        defaults={
            "name": "Pro",
            "monthly_price_cents": 2900,
            "included_ai_spend_usd": Decimal(included),
            "allows_overage": True,
        },
    )
    row = workspace_plan(workspace=workspace)
    row.plan, row.stripe_customer_id = plan, customer
    row.save()
    return plan


def bill(workspace: Workspace, cost: str, *, at: datetime | None = None) -> MeterOutbox:
    """A priced ledger row in `workspace` and its outbox row, as the gateway writes them."""
    with schema_context(workspace.schema_name), transaction.atomic():
        record = UsageRecord.objects.create(
            kind="openai_compatible", model="m1", outcome="ok", cost_usd=Decimal(cost)
        )
        if at is not None:
            UsageRecord.objects.filter(pk=record.pk).update(created_at=at)
            record.refresh_from_db()
        row = ledger_cost_recorded(
            schema_name=workspace.schema_name,
            ledger_id=record.pk,
            cost_usd=record.cost_usd,
            occurred_at=lambda: record.created_at,
            metered=metered_customer(schema_name=workspace.schema_name),
        )
    assert row is not None
    return row


def workers_run() -> None:
    """What the platform's workers do with the Stripe webhooks its view stored and queued:
    drain them all, then refresh dj-stripe's mirror they owe. Set as
    `FakeStripe.after_delivery` by tests that follow a flow through webhooks; it may run in
    the fake's server thread, whose connection it then closes."""
    with schema_context("public"):
        while webhooks_drain().claimed:
            pass
        while mirror_drain():
            pass
    if threading.current_thread() is not threading.main_thread():
        connection.close()
