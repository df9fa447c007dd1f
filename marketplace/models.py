"""The marketplace, in the public schema: publishers, listings and their immutable versions,
categories, moderation, reviews, flags, installs and run statistics.

Installed copies (an agent, or a workflow with its agents) live in the installing workspace's
schema and remember the listing version they came from (`listing_version_id` on the tenant
models); `Install` here is the public record of who installed what. Statistics are numbers only
(`RunSample`: success, latency, cost): never a workspace's inputs or outputs.

Prices fit without a rewrite: a listing has a pricing model and a price; free is the default.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from pgvector.django import HnswIndex, VectorField

EMBEDDING_DIMENSIONS = 384


class Category(models.Model):
    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=80, unique=True)
    description = models.CharField(max_length=300, blank=True)
    icon = models.CharField(max_length=16, blank=True, help_text="An emoji or short mark.")
    position = models.PositiveSmallIntegerField(default=100)

    class Meta:
        ordering = ["position", "name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Publisher(models.Model):
    """A creator's public profile: one per publishing workspace. The platform's own catalogue
    (`manage.py import_catalog`) has a publisher without a workspace."""

    workspace = models.OneToOneField(
        "tenants.Workspace",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="publisher",
    )
    slug = models.SlugField(max_length=60, unique=True)
    display_name = models.CharField(max_length=80)
    bio = models.CharField(max_length=500, blank=True)
    website = models.URLField(blank=True)
    verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name


class Listing(models.Model):
    class Kind(models.TextChoices):
        AGENT = "agent", "Agent"
        WORKFLOW = "workflow", "Workflow template"

    class Pricing(models.TextChoices):
        FREE = "free", "Free"
        ONE_TIME = "one_time", "One-time purchase"
        PER_RUN = "per_run", "Per run"
        MONTHLY = "monthly", "Monthly"

    publisher = models.ForeignKey(Publisher, on_delete=models.PROTECT, related_name="listings")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    slug = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=100)
    summary = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="Markdown, rendered safely.")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="listings")
    tags = ArrayField(models.CharField(max_length=30), default=list, blank=True)
    icon = models.CharField(max_length=16, blank=True)
    # The version installs get; set when a version is approved.
    current_version = models.ForeignKey(
        "ListingVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    featured = models.BooleanField(default=False)
    unlisted_at = models.DateTimeField(
        null=True, blank=True, help_text="Set by staff: hidden from browsing and installs."
    )
    unlisted_reason = models.CharField(max_length=300, blank=True)
    pricing = models.CharField(max_length=16, choices=Pricing.choices, default=Pricing.FREE)
    price_cents = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3, default="usd")
    # Denormalised for browsing (kept by marketplace services, never by signals).
    providers = ArrayField(models.CharField(max_length=30), default=list, blank=True)
    install_count = models.PositiveIntegerField(default=0)
    review_count = models.PositiveIntegerField(default=0)
    rating_avg = models.DecimalField(max_digits=3, decimal_places=2, null=True, blank=True)
    run_count = models.PositiveIntegerField(default=0)
    success_rate = models.FloatField(null=True, blank=True)
    p95_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    median_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    search_vector = SearchVectorField(null=True, editable=False)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, editable=False)
    published_at = models.DateTimeField(null=True, blank=True, help_text="First approval.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "id"]
        indexes = [
            GinIndex(fields=["search_vector"], name="listing_search_vector"),
            HnswIndex(
                name="listing_embedding",
                fields=["embedding"],
                m=24,
                ef_construction=128,
                opclasses=["vector_cosine_ops"],
            ),
            models.Index(fields=["category", "kind"], name="listing_category_kind"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(pricing="free", price_cents=0) | ~Q(pricing="free"),
                name="listing_free_has_no_price",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_public(self) -> bool:
        return self.current_version_id is not None and self.unlisted_at is None


class ListingVersion(models.Model):
    """One submitted snapshot: the definition as published, without secrets or knowledge-base
    contents. Never changes after submission; moderation fields record the decision."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    changelog = models.TextField(blank=True)
    definition = models.JSONField(help_text="The agent or workflow snapshot, secrets removed.")
    required_tools = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    required_providers = ArrayField(models.CharField(max_length=30), default=list, blank=True)
    example_inputs = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    moderation_reason = models.TextField(blank=True)
    moderated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    moderated_at = models.DateTimeField(null=True, blank=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    source_kind = models.CharField(max_length=16, blank=True, help_text="agent or workflow")
    source_id = models.BigIntegerField(
        null=True, blank=True, help_text="In the publisher's schema."
    )
    # The price this version is sold at (the listing's price when it was submitted); purchases
    # copy it, so a later price applies to new purchases only.
    pricing = models.CharField(max_length=16, choices=Listing.Pricing.choices, default="free")
    price_cents = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3, default="usd")
    # Opt-in by the publisher: the latest passed evaluation of the source when it was submitted
    # (docs/evals.md). Null when not shown.
    evaluation_score = models.DecimalField(
        max_digits=5, decimal_places=4, null=True, blank=True, help_text="Share of cases passed."
    )
    evaluation_cases = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["listing", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["listing", "number"], name="listing_version_number"),
        ]

    def __str__(self) -> str:
        return f"{self.listing.title} v{self.number}"


class Install(models.Model):
    """A workspace's installed copy of a listing version. One active install per listing and
    workspace; an upgrade moves `version`, an uninstall sets `uninstalled_at`."""

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="installs")
    version = models.ForeignKey(ListingVersion, on_delete=models.PROTECT, related_name="installs")
    workspace = models.ForeignKey(
        "tenants.Workspace", on_delete=models.CASCADE, related_name="installs"
    )
    installed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    object_kind = models.CharField(max_length=16, help_text="agent or workflow")
    object_id = models.BigIntegerField(help_text="The copy's id in the workspace's schema.")
    runs_completed = models.PositiveIntegerField(default=0)
    installed_at = models.DateTimeField(auto_now_add=True)
    upgraded_at = models.DateTimeField(null=True, blank=True)
    uninstalled_at = models.DateTimeField(null=True, blank=True)
    # Automatic upgrades (docs/marketplace.md, marketplace/auto_upgrade.py).
    auto_upgrade = models.BooleanField(
        default=False, help_text="Upgrade automatically when a new version is approved."
    )
    auto_upgrade_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The owner or admin who turned it on: automatic upgrades act as them.",
    )
    gate_suite_id = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The installing workspace's evaluation suite a new version must pass first.",
    )
    auto_version = models.ForeignKey(
        ListingVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The version the automatic upgrade handled (or is handling): once per version.",
    )
    auto_state = models.CharField(max_length=16, blank=True)  # evaluating, upgraded, held
    auto_evaluation_id = models.BigIntegerField(null=True, blank=True)
    auto_trial: Any = models.JSONField(default=dict, blank=True)  # the copy being evaluated
    auto_note = models.CharField(max_length=600, blank=True)

    class Meta:
        ordering = ["-installed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["listing", "workspace"],
                condition=Q(uninstalled_at__isnull=True),
                name="one_active_install_per_workspace",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.listing} in {self.workspace.name}"


class Review(models.Model):
    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="reviews")
    workspace = models.ForeignKey(
        "tenants.Workspace", on_delete=models.CASCADE, related_name="reviews"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    rating = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    text = models.TextField(blank=True)
    reply = models.TextField(blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["listing", "workspace"], name="one_review_per_workspace"
            ),
            models.CheckConstraint(
                condition=Q(rating__gte=1, rating__lte=5), name="review_rating_1_to_5"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rating}★ {self.listing}"


class Flag(models.Model):
    class Reason(models.TextChoices):
        SPAM = "spam", "Spam or misleading"
        HARMFUL = "harmful", "Harmful or abusive"
        BROKEN = "broken", "Does not work"
        COPYRIGHT = "copyright", "Copyright or trademark"
        OTHER = "other", "Other"

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="flags")
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=16, choices=Reason.choices)
    details = models.TextField(blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resolution = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One open report per person and listing; after staff resolve it, they may
            # report the listing again.
            models.UniqueConstraint(
                fields=["listing", "reporter"],
                condition=models.Q(resolved_at__isnull=True),
                name="marketplace_flag_one_open_per_reporter",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()}: {self.listing}"


class RunSample(models.Model):
    """One finished run of an installed copy: numbers only, for the listing's statistics."""

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="run_samples")
    version = models.ForeignKey(
        ListingVersion, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    succeeded = models.BooleanField()
    latency_ms = models.PositiveIntegerField()
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["listing", "-created_at"], name="run_sample_recent")]

    def __str__(self) -> str:
        return f"{self.listing_id}: {'ok' if self.succeeded else 'failed'} {self.latency_ms} ms"


# --- Paid listings (issue 15): who gets paid, and what a workspace bought -------------------


class FeeRule(models.Model):
    """The platform's fee on paid listings, in percent of each charge: the rule without a
    category is the default; a category's rule overrides it. Set by staff in the admin; shown to
    creators before they publish; copied onto each purchase."""

    category = models.OneToOneField(
        Category, null=True, blank=True, on_delete=models.CASCADE, related_name="fee_rule"
    )
    percent = models.DecimalField(
        max_digits=5, decimal_places=2, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["category"],
                condition=Q(category__isnull=True),
                name="fee_rule_one_default",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.percent}% ({self.category or 'default'})"


class CreatorAccount(models.Model):
    """A publisher's Stripe Connect account (Express): created when the publisher starts
    onboarding, kept current from `account.updated` (re-read from Stripe, never from the event's
    copy). A paid listing is sold only for an onboarded publisher.

    The platform charges buyers itself and transfers to creators (separate charges and
    transfers), so a creator's account only needs Stripe's `transfers` capability: it never
    takes card payments, and `charges_enabled` (which needs `card_payments`) stays false for
    it. Onboarded means: details submitted, payouts enabled and `transfers` active."""

    publisher = models.OneToOneField(
        Publisher, on_delete=models.PROTECT, related_name="creator_account"
    )
    stripe_account_id = models.CharField(max_length=255, unique=True)
    country = models.CharField(max_length=2, blank=True)
    default_currency = models.CharField(max_length=3, blank=True)
    details_submitted = models.BooleanField(default=False)
    charges_enabled = models.BooleanField(default=False)
    payouts_enabled = models.BooleanField(default=False)
    transfers_active = models.BooleanField(
        default=False, help_text="Stripe's `transfers` capability is active: we may pay it."
    )
    # Stripe's `requirements.currently_due` (field names) and `requirements.disabled_reason`.
    requirements_due = ArrayField(models.CharField(max_length=120), default=list, blank=True)
    disabled_reason = models.CharField(max_length=120, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True, help_text="Last read from Stripe.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.publisher} ({self.stripe_account_id})"

    @property
    def onboarded(self) -> bool:
        return self.details_submitted and self.payouts_enabled and self.transfers_active


class Purchase(models.Model):
    """A workspace's right to run a paid listing, bought at the price of the version it was
    bought from (price changes apply to new purchases only). One-time: active for good once
    paid. Monthly: active while its subscription is; canceling stops it at period end. Per run:
    active while the workspace has a payment method on file; each successful run is charged."""

    class Pricing(models.TextChoices):
        ONE_TIME = Listing.Pricing.ONE_TIME.value, "One-time purchase"
        PER_RUN = Listing.Pricing.PER_RUN.value, "Per successful run"
        MONTHLY = Listing.Pricing.MONTHLY.value, "Monthly"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for payment"
        ACTIVE = "active", "Active"
        CANCELING = "canceling", "Ends at period end"
        ENDED = "ended", "Ended"
        REFUNDED = "refunded", "Refunded"

    buyer = models.ForeignKey(
        "tenants.Workspace", on_delete=models.PROTECT, related_name="purchases"
    )
    listing = models.ForeignKey(Listing, on_delete=models.PROTECT, related_name="purchases")
    version = models.ForeignKey(ListingVersion, on_delete=models.PROTECT, related_name="+")
    publisher = models.ForeignKey(Publisher, on_delete=models.PROTECT, related_name="sales")
    pricing = models.CharField(max_length=16, choices=Pricing.choices)
    unit_amount_cents = models.PositiveIntegerField(help_text="The price paid, per unit.")
    currency = models.CharField(max_length=3, default="usd")
    fee_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="The platform fee when bought, in percent of each charge.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    bought_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    stripe_checkout_session_id = models.CharField(max_length=255, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True)
    stripe_subscription_id = models.CharField(max_length=255, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    first_success_at = models.DateTimeField(
        null=True, blank=True, help_text="The buyer's first successful run (reviews need one)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "listing"],
                condition=Q(status__in=["pending", "active", "canceling"]),
                name="purchase_one_live_per_buyer_listing",
            ),
            models.CheckConstraint(
                condition=Q(unit_amount_cents__gt=0), name="purchase_amount_positive"
            ),
        ]
        indexes = [models.Index(fields=["publisher", "-created_at"], name="purchase_publisher")]

    def __str__(self) -> str:
        return f"{self.listing} for {self.buyer} ({self.get_pricing_display()})"

    @property
    def runnable(self) -> bool:
        return self.status in PURCHASE_RUNNABLE


# The statuses in which a purchase lets its copies run (canceling: until the period ends).
PURCHASE_RUNNABLE = (Purchase.Status.ACTIVE, Purchase.Status.CANCELING)


# --- Money after a sale (issue 15): the creator ledger, payouts and refunds -------------------


class LedgerImmutable(Exception):
    """A ledger row was about to be changed or deleted: corrections are new rows."""


class Payout(models.Model):
    """One transfer to a creator's Connect account for one period (a UTC day) and currency.
    Created with the ledger legs that move its amount from available to paid, before Stripe is
    called; the transfer's idempotency key is `payout-<creator>-<period>-<currency>` and its
    transfer group `payout-<id>`, so a re-run (after a crash, or a concurrent run) repeats the
    same call and Stripe answers with the same transfer, or, once Stripe forgot the key (24 h),
    finds it by its group."""

    class Status(models.TextChoices):
        PENDING = "pending", "Sending"
        PAID = "paid", "Paid"
        CANCELED = "canceled", "Canceled (returned to available)"

    creator = models.ForeignKey(CreatorAccount, on_delete=models.PROTECT, related_name="payouts")
    period = models.CharField(max_length=10, help_text="The UTC day of the run (YYYY-MM-DD).")
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_transfer_id = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["creator", "period", "currency"], name="payout_one_per_period_currency"
            ),
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="payout_positive"),
        ]

    def __str__(self) -> str:
        return f"Payout {self.period} to {self.creator_id}: {self.amount_cents} {self.currency}"

    @property
    def idempotency_key(self) -> str:
        return f"payout-{self.creator_id}-{self.period}-{self.currency}"

    @property
    def transfer_group(self) -> str:
        return f"payout-{self.pk}"


class Refund(models.Model):
    """A refund staff made from the admin, of one sale (`sale_ref`) of a purchase. The row is
    saved before Stripe is called and its id is the refund's idempotency key, so a retry after
    a failure never refunds twice."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for Stripe"
        DONE = "done", "Refunded"
        FAILED = "failed", "Refused by Stripe"
        CANCELED = "canceled", "Canceled by staff"

    purchase = models.ForeignKey(Purchase, on_delete=models.PROTECT, related_name="refunds")
    sale_ref = models.CharField(max_length=255)
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    reason = models.CharField(max_length=240)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_refund_id = models.CharField(max_length=255, blank=True)
    stripe_reversal_id = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="refund_positive"),
        ]

    def __str__(self) -> str:
        amount = f"{(self.amount_cents or 0) / 100:.2f} {self.currency.upper()}"
        return f"Refund {self.pk} of {self.sale_ref}: {amount}"

    @property
    def idempotency_key(self) -> str:
        return f"refund-{self.pk}"


class LedgerEntry(models.Model):
    """One signed movement of a creator's money, in cents, in one bucket. Append-only: the
    model refuses save() of an existing row and delete(), and a database trigger
    (0005_money) refuses UPDATE and DELETE, so every balance is the sum of its rows.

    `amount_cents` is the creator's money. A sale's row also says what the buyer paid
    (`gross_cents`), the platform's fee (`fee_cents`) and Stripe's fee when known (borne by the
    platform); a refund's or a lost dispute's first row says what went back likewise (negative).
    So the rows of any operation sum to its gross less its fee: moving money between buckets
    (a hold ending, a payout) sums to 0, and all of a creator's rows sum to what they earned
    less what was refunded or lost. Each row belongs to the sale (`sale_ref`, the Stripe id the
    sale was recorded under) whose money it moves, so a refund finds where that sale's money
    is. `idempotency_key` is unique: an operation's rows are `<operation key>:<n>`."""

    class Bucket(models.TextChoices):
        PENDING = "pending", "Pending (in hold)"
        AVAILABLE = "available", "Available"
        FROZEN = "frozen", "Frozen (disputed)"
        PAID = "paid", "Paid out"

    class Kind(models.TextChoices):
        SALE = "sale", "Sale"
        HOLD_RELEASE = "hold_release", "Hold ended"
        PAYOUT = "payout", "Payout"
        PAYOUT_CANCELED = "payout_canceled", "Payout canceled"
        REFUND = "refund", "Refund"
        TRANSFER_REVERSAL = "transfer_reversal", "Refund (taken back from a payout)"
        CLAWBACK = "clawback", "Clawback (owed, netted against payouts)"
        DISPUTE_FREEZE = "dispute_freeze", "Dispute opened"
        DISPUTE_RELEASE = "dispute_release", "Dispute won"
        DISPUTE_LOSS = "dispute_loss", "Dispute lost"

    publisher = models.ForeignKey(Publisher, on_delete=models.PROTECT, related_name="ledger")
    purchase = models.ForeignKey(
        Purchase, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger"
    )
    listing = models.ForeignKey(
        Listing, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    sale_ref = models.CharField(max_length=255, blank=True, db_index=True)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    bucket = models.CharField(max_length=16, choices=Bucket.choices)
    amount_cents = models.BigIntegerField()
    gross_cents = models.BigIntegerField(default=0)
    fee_cents = models.BigIntegerField(default=0)
    stripe_fee_cents = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, default="usd")
    payout = models.ForeignKey(
        Payout, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger"
    )
    refund = models.ForeignKey(
        Refund, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger"
    )
    stripe_id = models.CharField(
        max_length=255, blank=True, help_text="The transfer, reversal, refund or dispute."
    )
    available_at = models.DateTimeField(null=True, blank=True)
    occurred_at = models.DateTimeField()
    idempotency_key = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["publisher", "bucket"], name="ledger_publisher_bucket"),
            models.Index(fields=["publisher", "occurred_at"], name="ledger_publisher_time"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount_cents:+d} {self.bucket}"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise LedgerImmutable("Ledger entries are never changed: add a correcting entry.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise LedgerImmutable("Ledger entries are never deleted: add a correcting entry.")


class RunCharge(models.Model):
    """One successful run of a per-run purchase, on its way to the buyer's next Stripe invoice
    as an invoice item (an outbox, as billing's meter outbox: written when the run's success is
    heard, sent by `marketplace.purchases.run_charges_flush`, retried while Stripe is down).
    Invariant: one row per purchase and run, and its idempotency key `per-run-<purchase>-<run>`
    makes Stripe add the item once however often it is sent. Failed runs have no row.
    `stripe_invoice_id` / `stripe_invoice_line_id` are where Stripe says the item went (read
    from the invoice's lines): a charge is never invoiced twice
    (`marketplace.purchases.run_charges_invoice`), and its sale is refunded against that
    invoice's payment (`marketplace.earnings`)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    purchase = models.ForeignKey(Purchase, on_delete=models.PROTECT, related_name="run_charges")
    run_id = models.BigIntegerField(help_text="The run's id in the buyer's schema.")
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=500, blank=True)
    stripe_invoice_item_id = models.CharField(max_length=255, blank=True)
    stripe_invoice_id = models.CharField(
        max_length=255,
        blank=True,
        help_text="The Stripe invoice that took the charge (its subscription's next one, or a "
        "standalone one from `run_charges_invoice`); empty while it waits for one.",
    )
    stripe_invoice_line_id = models.CharField(
        max_length=255, blank=True, help_text="Its line on that invoice (the sale's id)."
    )
    unpaid_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a payment of that invoice first failed; cleared when it is paid. "
        "Past BILLING_GRACE_DAYS the buyer's per-run listings stop running.",
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["purchase", "run_id"], name="run_charge_one_per_run"),
            models.CheckConstraint(
                condition=Q(amount_cents__gt=0), name="run_charge_amount_positive"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="run_charge_due"),
            models.Index(
                fields=["status"],
                condition=Q(stripe_invoice_id=""),
                name="run_charge_uninvoiced",
            ),
            models.Index(
                fields=["stripe_invoice_line_id"],
                condition=~Q(stripe_invoice_line_id=""),
                name="run_charge_invoice_line",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.run_id} of purchase {self.purchase_id}"

    @property
    def idempotency_key(self) -> str:
        return f"per-run-{self.purchase_id}-{self.run_id}"


class BankPayout(models.Model):
    """A payout Stripe made from a creator's connected account to their bank (not ours: Stripe
    pays the account's balance out on its schedule), as Stripe last had it, kept from the
    connected account's `payout.paid` / `payout.failed` events. A failed one (a closed bank
    account) is shown on the creator's Earnings page and to staff until a later one is paid:
    the money is back in the connected account's Stripe balance, and the creator must fix
    their bank details."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        IN_TRANSIT = "in_transit", "In transit"
        PAID = "paid", "Paid"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    creator = models.ForeignKey(
        CreatorAccount, on_delete=models.PROTECT, related_name="bank_payouts"
    )
    stripe_payout_id = models.CharField(max_length=255, unique=True)
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    stripe_created_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-stripe_created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.stripe_payout_id} ({self.status}): {self.amount_cents} {self.currency}"
