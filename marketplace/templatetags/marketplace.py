import json
from typing import Any

from django import template
from django.utils.safestring import SafeString

from marketplace.markdown import render_markdown
from marketplace.models import Listing

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    """{{ listing.description|markdown }}: safe HTML from a creator's Markdown."""
    return render_markdown(text)


@register.filter(name="price")
def price_filter(listing: Listing) -> str:
    """ "Free", "$19.00" or "$0.25 per run"."""
    if listing.pricing == Listing.Pricing.FREE:
        return "Free"
    amount = f"${listing.price_cents / 100:,.2f}"
    return f"{amount} per run" if listing.pricing == Listing.Pricing.PER_RUN else amount


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
