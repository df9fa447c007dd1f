"""The search form: what the marketplace page and its htmx results read from the query string.
Bad values are reported beside their field and ignored (the page still shows results)."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from marketplace.models import Category, Listing

SORTS = [
    ("", "Best match"),
    ("rating", "Top rated"),
    ("installs", "Most installed"),
    ("new", "Newest"),
]
PRICES = [("", "Any price"), ("free", "Free"), ("paid", "Paid")]
RATINGS = [("", "Any rating"), ("4", "4★ and up"), ("3", "3★ and up")]
PROVIDERS = [
    ("", "Any provider"),
    ("offline", "Works offline"),
    ("anthropic", "Anthropic"),
    ("openai", "OpenAI"),
]


class SearchForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "e.g. bot that answers customer emails"}
        ),
    )
    category = forms.ChoiceField(required=False, label="Category")
    kind = forms.ChoiceField(
        required=False, label="Kind", choices=[("", "Agents and workflows"), *Listing.Kind.choices]
    )
    provider = forms.ChoiceField(required=False, label="Provider", choices=PROVIDERS)
    price = forms.ChoiceField(required=False, label="Price", choices=PRICES)
    rating = forms.ChoiceField(required=False, label="Rating", choices=RATINGS)
    sort = forms.ChoiceField(required=False, label="Sort by", choices=SORTS)
    page = forms.IntegerField(required=False, min_value=1, max_value=50, widget=forms.HiddenInput)

    def __init__(self, *args: Any, categories: list[Category], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        category = cast(forms.ChoiceField, self.fields["category"])
        category.choices = [("", "All categories")] + [(c.slug, c.name) for c in categories]

    def filters(self) -> dict[str, Any]:
        """The valid values as listing_search arguments (invalid fields are left out)."""
        data = (
            self.cleaned_data
            if self.is_valid()
            else {
                name: self.cleaned_data.get(name) for name in self.fields if name not in self.errors
            }
        )
        rating = data.get("rating")
        return {
            "q": data.get("q") or "",
            "category": data.get("category") or None,
            "kind": data.get("kind") or None,
            "provider": data.get("provider") or None,
            "pricing": data.get("price") or None,
            "min_rating": float(rating) if rating else None,
            "sort": data.get("sort") or "relevance",
        }

    def page_number(self) -> int:
        return int(self.cleaned_data.get("page") or 1) if hasattr(self, "cleaned_data") else 1
