import json
from typing import Any

from django import template
from django.utils.safestring import SafeString

from marketplace import pricing
from marketplace.markdown import render_markdown
from marketplace.models import PURCHASE_RUNNABLE, Listing, ListingVersion, Purchase
from marketplace.pricing import price_label
from tenants.schemas import current_schema

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    """{{ listing.description|markdown }}: safe HTML from a creator's Markdown."""
    return render_markdown(text)


@register.filter(name="price")
def price_filter(listing: Listing) -> str:
    """ "Free", "$19.00" or "$0.25 per run"."""
    return price_label(listing)


@register.filter(name="purchase_terms")
def purchase_terms_filter(purchase: Purchase) -> str:
    """ "$19.00 one-time", "$9.00 a month" or "$0.25 per successful run"."""
    return pricing.price_terms(purchase)


@register.inclusion_tag("marketplace/_billing_notice.html")
def billing_notice(listing: Listing | None) -> dict[str, str]:
    """{% billing_notice listing %}: the "not charged yet" notice of a paid listing."""
    return {"notice": pricing.billing_notice(listing) if listing is not None else ""}


@register.inclusion_tag("marketplace/_billing_notice.html")
def installed_billing_notice(listing_version_id: int | None) -> dict[str, str]:
    """{% installed_billing_notice agent.listing_version_id %}: on the pages that run an
    installed copy, the "not charged yet" notice while billing is off, or with billing on, the
    per-run price of the workspace's purchase (not the copy's version: an upgrade keeps the
    purchase) before every run. One query, only for a copy of a listing."""
    if not listing_version_id:
        return {"notice": ""}
    if not pricing.checkout_active():
        version = (
            ListingVersion.objects.select_related("listing").filter(pk=listing_version_id).first()
        )
        return {"notice": pricing.billing_notice(version.listing) if version else ""}
    purchase = (
        Purchase.objects.filter(
            buyer__schema_name=current_schema(),
            listing__versions=listing_version_id,
            status__in=PURCHASE_RUNNABLE,
        )
        .only("pricing", "unit_amount_cents", "currency")
        .first()
    )
    return {"notice": pricing.per_run_notice(purchase)}


@register.filter(name="example_text")
def example_text(example: Any) -> str:
    """An example input as a person reads it: the text of a one-field input, else JSON."""
    if isinstance(example, dict) and len(example) == 1:
        (value,) = example.values()
        if isinstance(value, str):
            return value
    if isinstance(example, str):
        return example
    return json.dumps(example, ensure_ascii=False)
