"""What the billing API answers: the plan, the period, each allowance with its figure, and the
invoices (read only; plan changes go through Stripe Checkout and the customer portal)."""

from __future__ import annotations

from typing import Any

from djstripe.models import Invoice
from rest_framework import serializers

from billing.usage import Unit


class PlanOutput(serializers.Serializer[Any]):
    key = serializers.CharField()
    name = serializers.CharField()
    monthly_price_cents = serializers.IntegerField(help_text="US cents per month.")
    yearly_price_cents = serializers.IntegerField(help_text="US cents per year.")
    included_ai_spend_usd = serializers.DecimalField(max_digits=12, decimal_places=2)
    allows_overage = serializers.BooleanField()
    api_requests_per_minute = serializers.IntegerField(
        allow_null=True, help_text="Null: unlimited."
    )
    features = serializers.ListField(child=serializers.CharField())


class AllowanceOutput(serializers.Serializer[Any]):
    key = serializers.CharField(help_text="runs, ai_spend, seats, workflows or knowledge_storage.")
    name = serializers.CharField(source="label", help_text="What the allowance is, for people.")
    unit = serializers.ChoiceField(
        choices=[u.value for u in Unit], help_text="count, usd (dollars) or bytes."
    )
    used = serializers.DecimalField(
        max_digits=20, decimal_places=6, coerce_to_string=True, help_text="This period, now."
    )
    limit = serializers.DecimalField(
        max_digits=20,
        decimal_places=6,
        coerce_to_string=True,
        allow_null=True,
        help_text="What the plan allows per period; null: unlimited.",
    )
    percent = serializers.IntegerField(help_text="Share used, 0-100 (0 when unlimited).")
    over = serializers.BooleanField(help_text="Used beyond the allowance (overage plans).")


class BillingOutput(serializers.Serializer[Any]):
    plan = PlanOutput()
    status = serializers.CharField(
        source="subscription.status",
        help_text="trialing, active, past_due (grace period) or read_only.",
    )
    interval = serializers.CharField(
        allow_null=True,
        help_text="month or year while subscribed; null on a plan without a subscription.",
    )
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    trial_ends_at = serializers.DateTimeField(
        source="subscription.trial_ends_at", allow_null=True, help_text="While on a trial."
    )
    grace_ends_at = serializers.DateTimeField(
        source="subscription.grace_ends_at",
        allow_null=True,
        help_text="After a failed payment: when the workspace becomes read-only for runs.",
    )
    cancel_at_period_end = serializers.BooleanField(source="subscription.cancel_at_period_end")
    allowances = AllowanceOutput(many=True)
    overage_usd = serializers.DecimalField(
        max_digits=20,
        decimal_places=6,
        allow_null=True,
        help_text="AI spend beyond the plan's included amount this period; null for plans "
        "without overage.",
    )


class InvoiceOutput(serializers.Serializer[Invoice]):
    id = serializers.CharField(help_text="Stripe's invoice id.")
    number = serializers.CharField(allow_null=True)
    created = serializers.DateTimeField()
    currency = serializers.CharField()
    total_cents = serializers.IntegerField(source="total")
    amount_due_cents = serializers.IntegerField(source="amount_due")
    status = serializers.CharField(allow_null=True, help_text="draft, open, paid, void, …")
    hosted_invoice_url = serializers.URLField(allow_null=True)
