"""Marketplace API shapes: inputs are validated here (400 naming the field), outputs documented
for the OpenAPI schema.

Public outputs never carry another workspace's data: a review shows no author, and a version's
definition (the publisher's published snapshot, secrets removed) appears only in the versions
endpoint."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.serializers import InputSerializer
from marketplace.models import Flag, Install, Listing, ListingVersion, Purchase, Review
from marketplace.services import (
    CURRENCIES,
    MAX_PRICE_CENTS,
    MIN_PER_RUN_PRICE_CENTS,
    MIN_PRICE_CENTS,
)

SORTS = ["relevance", "rating", "installs", "new"]
MODES = ["combined", "keyword", "semantic"]

# --- Listings


class ListingSearchInput(serializers.Serializer[Any]):
    q = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    category = serializers.SlugField(max_length=60, required=False, help_text="Category slug.")
    kind = serializers.ChoiceField(choices=Listing.Kind.choices, required=False)
    provider = serializers.CharField(max_length=30, required=False, help_text="e.g. anthropic.")
    price = serializers.ChoiceField(choices=["free", "paid"], required=False)
    min_rating = serializers.FloatField(min_value=0, max_value=5, required=False)
    sort = serializers.ChoiceField(choices=SORTS, required=False, default="relevance")
    mode = serializers.ChoiceField(
        choices=MODES, required=False, default="combined", help_text="How `q` matches."
    )
    limit = serializers.IntegerField(min_value=1, max_value=100, required=False, default=24)
    offset = serializers.IntegerField(min_value=0, max_value=10_000, required=False, default=0)


class PublisherOutput(serializers.Serializer[Any]):
    slug = serializers.SlugField()
    display_name = serializers.CharField()
    verified = serializers.BooleanField()


class ListingOutput(serializers.ModelSerializer[Listing]):
    """A card: what browsing shows (no description, no definition)."""

    category = serializers.SlugField(source="category.slug", read_only=True)
    category_name = serializers.CharField(source="category.name", read_only=True)
    publisher = PublisherOutput(read_only=True)
    rating = serializers.DecimalField(
        source="rating_avg", max_digits=3, decimal_places=2, allow_null=True, read_only=True
    )
    reviews = serializers.IntegerField(source="review_count", read_only=True)
    installs = serializers.IntegerField(source="install_count", read_only=True)

    class Meta:
        model = Listing
        fields = [
            "slug",
            "kind",
            "title",
            "summary",
            "category",
            "category_name",
            "publisher",
            "tags",
            "icon",
            "featured",
            "pricing",
            "price_cents",
            "currency",
            "providers",
            "rating",
            "reviews",
            "installs",
            "run_count",
            "success_rate",
            "p95_latency_ms",
            "median_cost_usd",
            "published_at",
        ]


class ListingSearchOutput(serializers.Serializer[Any]):
    """The list envelope of every API list, plus how `q` matched."""

    count = serializers.IntegerField(
        allow_null=True,
        help_text="Matches ranked: a bound for semantic and combined search (they rank only the "
        "best candidates); null when browsing or for keyword search (not counted).",
    )
    next = serializers.URLField(allow_null=True, help_text="The next page, if there is one.")
    previous = serializers.URLField(allow_null=True)
    results = ListingOutput(many=True)
    mode = serializers.ChoiceField(choices=["browse", *MODES])


class CurrentVersionOutput(serializers.ModelSerializer[ListingVersion]):
    approved_at = serializers.DateTimeField(source="moderated_at", read_only=True)

    class Meta:
        model = ListingVersion
        fields = [
            "number",
            "changelog",
            "required_tools",
            "required_providers",
            "example_inputs",
            "approved_at",
        ]


class ListingDetailOutput(ListingOutput):
    current_version = CurrentVersionOutput(read_only=True)

    class Meta(ListingOutput.Meta):
        fields = [*ListingOutput.Meta.fields, "description", "current_version"]


class ListingVersionOutput(CurrentVersionOutput):
    """An approved version. A paid version's definition is what buyers pay for: it is given
    only to the publisher's own workspace (`PublisherListingVersionOutput`); anyone else gets
    null and receives their copy by buying and installing."""

    paid_definitions = False

    definition = serializers.JSONField(
        allow_null=True,
        read_only=True,
        help_text="The snapshot (agent settings and system prompt, or the workflow and its "
        "agents). Null for a paid version unless the caller is the publisher's workspace (its "
        "API key): buyers get their copy by installing.",
    )

    class Meta(CurrentVersionOutput.Meta):
        fields = [
            *CurrentVersionOutput.Meta.fields,
            "pricing",
            "price_cents",
            "currency",
            "definition",
        ]
        read_only_fields = fields

    def to_representation(self, instance: ListingVersion) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if instance.pricing != Listing.Pricing.FREE and not self.paid_definitions:
            data["definition"] = None
        return data


class PublisherListingVersionOutput(ListingVersionOutput):
    """The same, for the publisher's own workspace: every definition."""

    paid_definitions = True


# --- Publishing


class ListingPublishInput(InputSerializer):
    kind = serializers.ChoiceField(choices=Listing.Kind.choices)
    source_id = serializers.IntegerField(
        min_value=1, help_text="The agent's or workflow's id in this workspace."
    )
    title = serializers.CharField(max_length=100)
    summary = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    category = serializers.SlugField(max_length=60, help_text="Category slug.")
    tags = serializers.ListField(
        child=serializers.CharField(max_length=30), max_length=10, required=False, default=list
    )
    icon = serializers.CharField(max_length=16, required=False, allow_blank=True, default="")
    show_evaluation_score = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Show the latest passed evaluation score of the agent's current version (the "
        "workflow's active version) on the listing.",
    )
    changelog = serializers.CharField(required=False, allow_blank=True, default="")
    example_inputs = serializers.ListField(
        child=serializers.CharField(max_length=2000),
        max_length=10,
        required=False,
        default=list,
        help_text="Inputs a buyer can try, as text.",
    )
    slug = serializers.SlugField(
        max_length=80,
        required=False,
        allow_blank=True,
        help_text="Publish a new version of this listing of yours. Default: the listing this "
        "agent or workflow was published to before, or a new one.",
    )
    pricing = serializers.ChoiceField(
        choices=Listing.Pricing.choices,
        required=False,
        help_text="The version's price model. Left out: a new version keeps the listing's "
        "current price (a new listing is free); `free` makes it free. A paid one needs the "
        "publisher's payouts account to be onboarded (Publish → Set up payouts).",
    )
    price_cents = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_PRICE_CENTS,
        help_text=f"The price in cents: {MIN_PRICE_CENTS} to {MAX_PRICE_CENTS} for a one-time "
        f"or monthly version, {MIN_PER_RUN_PRICE_CENTS} to {MAX_PRICE_CENTS} per run, 0 when "
        "free. Left out: the listing's current price when the version stays paid, else 0.",
    )
    currency = serializers.ChoiceField(
        choices=[(c, c.upper()) for c in CURRENCIES],
        required=False,
        help_text="Left out: the listing's current currency.",
    )


class VersionStatusOutput(serializers.ModelSerializer[ListingVersion]):
    class Meta:
        model = ListingVersion
        fields = [
            "number",
            "status",
            "moderation_reason",
            "changelog",
            "created_at",
            "moderated_at",
        ]


class PublishedVersionOutput(VersionStatusOutput):
    listing = serializers.SlugField(source="listing.slug", read_only=True)

    class Meta(VersionStatusOutput.Meta):
        fields = [
            "listing",
            *VersionStatusOutput.Meta.fields,
            "pricing",
            "price_cents",
            "currency",
        ]
        read_only_fields = fields


class MyListingOutput(serializers.ModelSerializer[Listing]):
    is_public = serializers.BooleanField(read_only=True)
    current_version = serializers.IntegerField(
        source="current_version.number", allow_null=True, read_only=True
    )
    versions = VersionStatusOutput(many=True, read_only=True, help_text="Newest first.")

    class Meta:
        model = Listing
        fields = [
            "slug",
            "kind",
            "title",
            "is_public",
            "current_version",
            "unlisted_at",
            "unlisted_reason",
            "install_count",
            "review_count",
            "versions",
        ]


# --- Installs


class InstallOutput(serializers.ModelSerializer[Install]):
    listing = serializers.SlugField(source="listing.slug", read_only=True)
    listing_title = serializers.CharField(source="listing.title", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)

    class Meta:
        model = Install
        fields = [
            "id",
            "listing",
            "listing_title",
            "version",
            "object_kind",
            "object_id",
            "runs_completed",
            "installed_at",
            "upgraded_at",
            "uninstalled_at",
        ]


class InstallStateOutput(InstallOutput):
    update_available = serializers.SerializerMethodField(
        help_text="The listing has a newer approved version than this install's."
    )
    latest_version = serializers.IntegerField(
        source="listing.current_version.number", allow_null=True, read_only=True
    )
    latest_changelog = serializers.SerializerMethodField(
        help_text="The newer version's changelog when an update is available, else empty."
    )

    class Meta(InstallOutput.Meta):
        fields = [
            *InstallOutput.Meta.fields,
            "update_available",
            "latest_version",
            "latest_changelog",
        ]

    def get_update_available(self, install: Install) -> bool:
        current = install.listing.current_version
        return current is not None and current.number > install.version.number

    def get_latest_changelog(self, install: Install) -> str:
        if not self.get_update_available(install):
            return ""
        current = install.listing.current_version
        return current.changelog if current is not None else ""


# --- Reviews and flags


class ReviewOutput(serializers.ModelSerializer[Review]):
    class Meta:
        model = Review
        fields = ["id", "rating", "text", "reply", "replied_at", "created_at", "updated_at"]


class ReviewInput(InputSerializer):
    rating = serializers.IntegerField(min_value=1, max_value=5)
    text = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")


class ReplyInput(InputSerializer):
    text = serializers.CharField(max_length=5000)


class FlagInput(InputSerializer):
    reason = serializers.ChoiceField(choices=Flag.Reason.choices)
    details = serializers.CharField(
        max_length=5000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Required when the reason is `other`.",
    )


class FlagOutput(serializers.ModelSerializer[Flag]):
    listing = serializers.SlugField(source="listing.slug", read_only=True)

    class Meta:
        model = Flag
        fields = ["id", "listing", "reason", "details", "created_at"]


# --- Purchases


class PurchaseOutput(serializers.ModelSerializer[Purchase]):
    listing = serializers.SlugField(source="listing.slug", read_only=True)
    listing_title = serializers.CharField(source="listing.title", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    runnable = serializers.BooleanField(
        read_only=True, help_text="Installed copies may run (active, or canceling)."
    )

    class Meta:
        model = Purchase
        fields = [
            "id",
            "listing",
            "listing_title",
            "version",
            "pricing",
            "unit_amount_cents",
            "currency",
            "status",
            "runnable",
            "current_period_end",
            "activated_at",
            "ended_at",
            "created_at",
        ]
        # Output only: every field is always present (required in the schema).
        read_only_fields = fields


class PurchaseStartInput(InputSerializer):
    listing = serializers.SlugField(help_text="The listing's slug.")
    success_url = serializers.URLField(
        required=False, help_text="Where Checkout returns after paying (default: the listing)."
    )
    cancel_url = serializers.URLField(
        required=False, help_text="Where Checkout returns when abandoned (default: the listing)."
    )


class PurchaseStartOutput(serializers.Serializer[Any]):
    purchase = PurchaseOutput()
    checkout_url = serializers.URLField(
        allow_null=True,
        help_text="Stripe Checkout, to pay (or save a card); null when nothing is due now "
        "(per run with a card on file: the purchase is active). The purchase becomes active "
        "when Stripe confirms the payment, not when the buyer returns.",
    )
