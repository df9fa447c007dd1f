from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from djstripe.models import Event, Invoice, WebhookEventTrigger

from billing.pricing import Price

_PRICE: dict[str, Any] = {
    "max_digits": 12,
    "decimal_places": 6,
    "validators": [MinValueValidator(Decimal(0))],
}


class ModelPrice(models.Model):
    """Platform-wide price of one provider model, US dollars per million tokens. Staff edit it
    in the admin; the gateway prices every call with it."""

    provider = models.CharField(max_length=32, help_text="anthropic, openai, openai_compatible")
    model = models.CharField(max_length=128)
    input_per_mtok = models.DecimalField("input $/Mtok", **_PRICE)
    output_per_mtok = models.DecimalField("output $/Mtok", **_PRICE)
    cached_input_per_mtok = models.DecimalField(
        "cached input $/Mtok",
        null=True,
        blank=True,
        help_text="Empty: cached input costs the full input price.",
        **_PRICE,
    )
    cache_write_per_mtok = models.DecimalField(
        "cache write $/Mtok",
        null=True,
        blank=True,
        help_text="Empty: cache writes cost the full input price.",
        **_PRICE,
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "model"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model"], name="one_price_per_model"),
            models.CheckConstraint(
                condition=Q(input_per_mtok__gte=0) & Q(output_per_mtok__gte=0),
                name="model_price_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    def as_price(self) -> Price:
        return Price(
            input_per_mtok=self.input_per_mtok,
            output_per_mtok=self.output_per_mtok,
            cached_input_per_mtok=self.cached_input_per_mtok,
            cache_write_per_mtok=self.cache_write_per_mtok,
        )


class Plan(models.Model):
    """What a workspace may use and what it pays (issue 14). Staff edit plans in the admin;
    `manage.py billing_sync_plans` (later) mirrors each to a Stripe Product and Prices whose
    lookup keys are `lookup_key("month")` and `lookup_key("year")`. Money is integer cents;
    included AI spend is dollars of model cost from the price table. An empty allowance is
    unlimited."""

    key = models.SlugField(max_length=40, unique=True, help_text="Stable id: free, pro, team.")
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=240, blank=True)
    monthly_price_cents = models.PositiveIntegerField(default=0, help_text="US cents per month.")
    yearly_price_cents = models.PositiveIntegerField(default=0, help_text="US cents per year.")
    included_ai_spend_usd = models.DecimalField(
        "included AI spend ($/month)",
        max_digits=12,
        decimal_places=2,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Model cost (from the price table) included each month.",
    )
    runs_per_month = models.PositiveIntegerField(null=True, blank=True)
    seats = models.PositiveIntegerField(
        null=True, blank=True, help_text="Members, owners included."
    )
    workflows = models.PositiveIntegerField(null=True, blank=True)
    knowledge_storage_mb = models.PositiveIntegerField(null=True, blank=True)
    api_requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    features = models.JSONField(default=list, blank=True, help_text='Feature flags, e.g. ["sso"].')
    allows_overage = models.BooleanField(
        default=False,
        help_text="Usage beyond the allowance is billed (paid plans) instead of refused.",
    )
    trial_days = models.PositiveSmallIntegerField(default=0)
    is_default = models.BooleanField(
        default=False, help_text="New workspaces start on it (exactly one plan)."
    )
    is_public = models.BooleanField(default=True, help_text="Offered on the billing page.")
    sort_order = models.PositiveSmallIntegerField(default=0)
    stripe_product_id = models.CharField(
        max_length=255, blank=True, help_text="Set by manage.py billing_sync_plans."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sort_order", "monthly_price_cents", "key"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_plan"
            ),
            models.CheckConstraint(
                condition=Q(included_ai_spend_usd__gte=0), name="plan_ai_spend_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(is_default=False) | Q(monthly_price_cents=0, yearly_price_cents=0),
                name="default_plan_is_free",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_free(self) -> bool:
        return self.monthly_price_cents == 0 and self.yearly_price_cents == 0

    @property
    def yearly_offered(self) -> bool:
        """A yearly price is sold unless the plan bills overage, which is metered monthly (a
        Stripe subscription bills all its items on one interval)."""
        return bool(self.yearly_price_cents) and not self.allows_overage

    def lookup_key(self, interval: str) -> str:
        """The Stripe Price lookup key of this plan's `interval` ("month" or "year") price."""
        return f"plan_{self.key}_{interval}"


class WorkspacePlan(models.Model):
    """The plan a workspace is on, and where its subscription stands. One row per workspace
    (public schema: staff and the webhook handlers see every workspace). The subscription
    fields are filled from Stripe's webhooks (billing/webhooks.py); a workspace without a
    subscription is on its (free) plan with none."""

    class Status(models.TextChoices):
        TRIALING = "trialing", "Trial"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Payment failed (grace period)"
        READ_ONLY = "read_only", "Read-only (unpaid)"

    workspace = models.OneToOneField(
        "tenants.Workspace", on_delete=models.CASCADE, related_name="billing"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="workspaces")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    trial_ends_at = models.DateTimeField(null=True, blank=True)
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    cancel_at_period_end = models.BooleanField(default=False)
    runs_used = models.PositiveIntegerField(
        default=0, help_text="Runs started in the current period (agent and workflow runs)."
    )
    grace_ends_at = models.DateTimeField(null=True, blank=True)
    comped = models.BooleanField(
        default=False, help_text="Put on its plan by staff, without a subscription."
    )
    comp_ends_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a comped plan falls back to the default plan (empty: indefinitely).",
    )
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    stripe_subscription_id = models.CharField(max_length=255, blank=True)
    # The last Checkout Session started for a plan; starting another expires it first, so at
    # most one can be paid (two tabs must not make two subscriptions).
    stripe_checkout_session_id = models.CharField(max_length=255, blank=True, editable=False)
    payment_failed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the payment that started the grace period failed."
    )
    # Forward-only webhook state (billing/subscription_state.py): an event older
    # than the last one applied is skipped, and a subscription created before the applied one
    # never replaces it.
    stripe_subscription_created = models.DateTimeField(null=True, blank=True, editable=False)
    stripe_event_created = models.DateTimeField(null=True, blank=True, editable=False)
    ai_spend_warned_period = models.DateTimeField(
        null=True, blank=True, help_text="Start of the period the AI-spend mail was sent for."
    )
    ai_spend_warned_percent = models.PositiveSmallIntegerField(
        default=0, help_text="The last AI-spend share mailed in that period (80 or 100)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workspace__name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(current_period_end__gt=models.F("current_period_start")),
                name="billing_period_not_empty",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workspace} on {self.plan}"


class MeterOutbox(models.Model):
    """One billable ledger row's meter event, on its way to Stripe Billing Meters (issue 14,
    docs/billing.md "Metered overage"). Written in the transaction that records the ledger
    row's cost (`billing.meter.ledger_cost_recorded`), sent by `billing.meter.meter_flush`.
    Invariant: one row per (ledger schema, ledger row, event name), and its id is the meter
    event's `identifier`, so a row Stripe already counted is never counted again."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    workspace = models.ForeignKey(
        "tenants.Workspace", on_delete=models.CASCADE, related_name="meter_events"
    )
    event_name = models.CharField(max_length=100, help_text="The Stripe meter's event name.")
    value = models.PositiveBigIntegerField(help_text="Whole units (AI spend: micro-dollars).")
    stripe_customer_id = models.CharField(max_length=255)
    ledger_schema = models.CharField(max_length=63, help_text="Schema of the ledger row.")
    ledger_id = models.BigIntegerField(help_text="The UsageRecord id in that schema.")
    occurred_at = models.DateTimeField(help_text="When the ledger row was written.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "meter outbox row"
        constraints = [
            models.UniqueConstraint(
                fields=["ledger_schema", "ledger_id", "event_name"],
                name="one_meter_event_per_ledger_row",
            ),
            models.CheckConstraint(condition=Q(value__gt=0), name="meter_value_positive"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="meter_outbox_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_name} {self.value} ({self.status})"

    @property
    def identifier(self) -> str:
        """The meter event's `identifier` (Stripe deduplicates by it) and idempotency key."""
        return f"meter-outbox-{self.pk}"


class StripeMirrorSync(models.Model):
    """A refresh of dj-stripe's mirror of one Stripe object, owed by webhook events and done by
    `billing.stripe_mirror.mirror_drain` off the webhooks' hot path (decision 91). One row per
    object for the events dj-stripe's handlers answer by re-reading the object (a later event
    takes over the row: the refresh re-reads what Stripe has then); one per event for the
    others (deletions). Deleted when done."""

    key = models.CharField(
        max_length=300, unique=True, help_text="`<object>:<id>` or `event:<id>`."
    )
    event_id = models.CharField(max_length=255, help_text="The Stripe event whose handlers run.")
    event_type = models.CharField(max_length=250)
    due_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["due_at", "id"]
        verbose_name = "Stripe mirror refresh"
        indexes = [models.Index(fields=["due_at", "id"], name="stripe_mirror_due")]

    def __str__(self) -> str:
        return f"{self.key} ({self.event_type})"


class CreditGrant(models.Model):
    """AI spend staff added to a workspace's allowance for one period (the back-office's
    *Grant credit*). A ledger: rows are only ever added, never edited or deleted; the
    allowance of a period is the plan's included spend plus the grants whose period contains
    the moment asked about (`billing.quotas.ai_spend_allowance`)."""

    workspace = models.ForeignKey(
        "tenants.Workspace", on_delete=models.CASCADE, related_name="credit_grants"
    )
    amount_usd = models.DecimalField(
        "amount ($)", max_digits=12, decimal_places=2, help_text="Dollars of model cost."
    )
    reason = models.CharField(max_length=240)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["workspace", "period_end"], name="credit_grant_ws_period"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount_usd__gt=0), name="credit_grant_positive"),
            models.CheckConstraint(
                condition=Q(period_end__gt=models.F("period_start")),
                name="credit_grant_period_not_empty",
            ),
        ]

    def __str__(self) -> str:
        return f"${self.amount_usd} for {self.workspace}"


class StripeWebhook(WebhookEventTrigger):
    """dj-stripe's record of each webhook request Stripe sent, shown in the back-office under
    Billing (the admin's webhook log with its replay action; dj-stripe's own admins are hidden)."""

    class Meta:
        proxy = True
        ordering = ["-created"]
        verbose_name = "Stripe webhook"


class StripeEvent(Event):
    """The Stripe events dj-stripe stored from webhooks, shown under Billing."""

    class Meta:
        proxy = True
        ordering = ["-created"]
        verbose_name = "Stripe event"


class StripeInvoice(Invoice):
    """Stripe's invoices as dj-stripe keeps them (from webhooks), shown under Billing."""

    class Meta:
        proxy = True
        ordering = ["-created"]
        verbose_name = "Stripe invoice"
