"""Forms of the marketplace actions: install, review and flag (from a listing page, for one of
the user's workspaces), and publish (from a workspace)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django import forms
from django.http import QueryDict

from marketplace.connect import COUNTRIES, DEFAULT_COUNTRY
from marketplace.icons import ICON_ERROR, is_single_icon
from marketplace.models import Category, Flag, Listing
from marketplace.services import CURRENCIES, price_errors
from tenants.models import Workspace

PRICINGS = [
    (Listing.Pricing.FREE.value, "Free"),
    (Listing.Pricing.ONE_TIME.value, "One-time purchase"),
    (Listing.Pricing.PER_RUN.value, "Per successful run"),
    (Listing.Pricing.MONTHLY.value, "Monthly subscription"),
]
PRICE_FIELDS = ("pricing", "price", "currency")


def workspace_labels(
    workspaces: Iterable[Workspace], among: Iterable[Workspace] | None = None
) -> list[tuple[str, str]]:
    """(slug, label) per workspace: its name, with its address when another workspace of
    `among` (default: the same list; pass all of the user's) has the same name, so two "Acme"
    workspaces can be told apart in a picker."""
    workspaces = list(workspaces)
    names = Counter(w.name.casefold() for w in (workspaces if among is None else among))
    return [
        (w.slug, f"{w.name} (/w/{w.slug}/)" if names[w.name.casefold()] > 1 else w.name)
        for w in workspaces
    ]


class WorkspaceChoiceForm(forms.Form):
    workspace = forms.ChoiceField(label="Workspace")

    def __init__(
        self,
        *args: Any,
        workspaces: Iterable[Workspace],
        among: Iterable[Workspace] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["workspace"]
        assert isinstance(field, forms.ChoiceField)  # noqa: S101 (declared above)
        field.choices = workspace_labels(workspaces, among)


class InstallForm(WorkspaceChoiceForm):
    pass


class ReviewForm(WorkspaceChoiceForm):
    # No rating is chosen for the reviewer: a preselected five stars got published by default.
    rating = forms.TypedChoiceField(
        label="Rating",
        coerce=int,
        empty_value=None,
        error_messages={"required": "Choose a rating from one to five stars."},
        choices=[
            ("", "Choose a rating"),
            (5, "★★★★★ Excellent"),
            (4, "★★★★ Good"),
            (3, "★★★ Fair"),
            (2, "★★ Poor"),
            (1, "★ Bad"),
        ],
    )
    text = forms.CharField(
        label="Your review",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["workspace"].error_messages["invalid_choice"] = (
            "This workspace cannot review it: only a workspace that installed it and ran it "
            "(for a paid listing: bought it and ran it successfully) may."
        )


class FlagForm(forms.Form):
    reason = forms.ChoiceField(
        label="Reason", choices=[("", "Choose a reason"), *Flag.Reason.choices]
    )
    details = forms.CharField(
        label="Details",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required when the reason is “Other”.",
    )


class ReplyForm(forms.Form):
    text = forms.CharField(label="Reply", max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


def listing_initial(listing: Listing) -> dict[str, Any]:
    """The publish form's fields as they are on `listing` (a new version starts from them):
    its text, and its current price (the approved version's; before approval, the newest
    submitted one's)."""
    priced: Any = listing
    if listing.current_version_id is None:
        priced = listing.versions.order_by("-number").first() or listing
    initial: dict[str, Any] = {
        "title": listing.title,
        "summary": listing.summary,
        "description": listing.description,
        "category": listing.category.slug,
        "tags": ", ".join(listing.tags),
        "icon": listing.icon,
        "pricing": priced.pricing,
        "currency": priced.currency,
    }
    if priced.pricing != Listing.Pricing.FREE:
        initial["price"] = Decimal(priced.price_cents).scaleb(-2)  # 1900 → 19.00
    return initial


class PublishForm(forms.Form):
    source = forms.ChoiceField(label="What to publish")
    title = forms.CharField(label="Title", max_length=100)
    summary = forms.CharField(
        label="Summary", max_length=200, help_text="One sentence, shown on cards."
    )
    description = forms.CharField(
        label="Description",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="Markdown. Say what it does, what it needs, and an example.",
    )
    category = forms.ChoiceField(label="Category")
    tags = forms.CharField(
        label="Tags", required=False, help_text="Comma-separated, e.g. email, support"
    )
    icon = forms.CharField(
        label="Icon",
        required=False,
        max_length=16,
        help_text="One emoji, such as 🧾. Left empty, cards show ✦.",
    )
    changelog = forms.CharField(
        label="What's new", required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    example_inputs = forms.CharField(
        label="Example inputs",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line.",
    )
    show_evaluation_score = forms.BooleanField(
        label="Show the latest evaluation score on the listing",
        required=False,
        help_text="The share of cases the current version passed in its latest passed evaluation.",
    )
    pricing = forms.ChoiceField(
        label="Price model",
        choices=PRICINGS,
        initial=Listing.Pricing.FREE.value,
        help_text="A new price applies to new purchases only; buyers keep what they paid for.",
    )
    price = forms.DecimalField(
        label="Price",
        required=False,
        max_digits=9,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal"}),
        help_text="For a paid version, in dollars: per purchase or per month from $0.50, per "
        "successful run from $0.05; at most $10,000.",
    )
    currency = forms.ChoiceField(
        label="Currency",
        choices=[(c, c.upper()) for c in CURRENCIES],
        initial=CURRENCIES[0],
    )

    def __init__(
        self,
        *args: Any,
        sources: list[tuple[str, str]],
        listing: Listing | None = None,
        **kwargs: Any,
    ) -> None:
        """`listing`: the listing the chosen source was published to before (a new version
        of it). Unbound, the form starts from that listing: its text, and its current price
        (so a new version keeps it unless changed). Once the listing is published its
        category is fixed (purchases pay its category's fee), so the field is read-only."""
        if listing is not None and not args and "data" not in kwargs:
            kwargs["initial"] = {**listing_initial(listing), **kwargs.get("initial", {})}
        super().__init__(*args, **kwargs)
        if listing is not None and listing.published_at is not None:
            category_field = self.fields["category"]
            category_field.disabled = True
            category_field.initial = listing.category.slug
            category_field.help_text = (
                "A published listing keeps its category (and so its platform fee); write to "
                "support to move it."
            )
        # A form posted without a price model (an older page, a script) keeps the listing's
        # price, as the API does (services.listing_publish); it validates as free.
        self.price_given = self.is_bound and "pricing" in self.data
        if self.is_bound:
            defaults = {"pricing": Listing.Pricing.FREE.value, "currency": CURRENCIES[0]}
            data = QueryDict(mutable=True)
            data.update(self.data)
            for name, value in defaults.items():
                data.setdefault(name, value)
            self.data = data
        source = self.fields["source"]
        category = self.fields["category"]
        assert isinstance(source, forms.ChoiceField)  # noqa: S101 (declared below as ChoiceFields)
        assert isinstance(category, forms.ChoiceField)  # noqa: S101
        source.choices = [("", "Choose an agent or workflow"), *sources]
        category.choices = [("", "Choose a category")] + [
            (c.slug, c.name) for c in Category.objects.all()
        ]

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        kind, _, source_id = data["source"].partition(":")
        return {
            "kind": kind,
            "source_id": int(source_id),
            "title": data["title"],
            "summary": data["summary"],
            "description": data["description"],
            "category_slug": data["category"],
            "tags": [t.strip() for t in data["tags"].split(",") if t.strip()],
            "icon": data["icon"],
            "changelog": data["changelog"],
            "example_inputs": [
                line.strip() for line in data["example_inputs"].splitlines() if line.strip()
            ],
            "pricing": data["pricing"] if self.price_given else None,
            "price_cents": data["price_cents"] if self.price_given else None,
            "currency": data["currency"] if self.price_given else None,
            "show_evaluation_score": bool(data.get("show_evaluation_score")),
        }

    def listing_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name not in PRICE_FIELDS]

    def price_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in PRICE_FIELDS]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        pricing = data.get("pricing") or Listing.Pricing.FREE.value
        price: Decimal | None = data.get("price")
        data["price_cents"] = 0
        if pricing == Listing.Pricing.FREE or "price" in self.errors:
            return data  # a price typed before choosing Free is ignored
        if price is None:
            self.add_error(
                "price", "Give a price for a paid version: $0.50 ($0.05 per run) to $10,000."
            )
            return data
        data["price_cents"] = int(price * 100)
        for name, messages in price_errors(
            pricing, data["price_cents"], data.get("currency") or ""
        ).items():
            for message in messages:
                self.add_error("price" if name == "price_cents" else name, message)
        return data

    def clean_icon(self) -> str:
        icon: str = self.cleaned_data["icon"]
        if icon and not is_single_icon(icon):
            raise forms.ValidationError(ICON_ERROR)
        return icon


class PayoutsSetupForm(forms.Form):
    country = forms.ChoiceField(
        label="Country",
        choices=COUNTRIES,
        initial=DEFAULT_COUNTRY,
        help_text="Where you or your business is based. Stripe asks for the rest.",
    )


class AutoUpgradeForm(forms.Form):
    """An install's automatic upgrades (owners and admins), on the workspace's marketplace page."""

    enabled = forms.BooleanField(required=False, label="Upgrade automatically to new versions")
    suite = forms.TypedChoiceField(
        coerce=int,
        required=False,
        empty_value=None,
        choices=(),
        label="Evaluation a new version must pass",
        help_text="Needed when this workspace requires a passing evaluation before installs "
        "upgrade automatically.",
    )

    def __init__(self, *args: Any, suites: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["suite"].choices = [("", "No evaluation"), *suites]  # type: ignore[attr-defined]
