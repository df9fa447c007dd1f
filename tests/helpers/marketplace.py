"""Marketplace listings in tests."""

from __future__ import annotations

import itertools
from typing import Any

from django.utils import timezone

from marketplace.models import Category, Listing, ListingVersion, Publisher
from marketplace.search_index import index_listing

_counter = itertools.count()


def make_listing(
    *,
    publisher: Publisher,
    category: Category,
    title: str,
    summary: str = "",
    description: str = "",
    tags: list[str] | None = None,
    approved: bool = True,
    index: bool = True,
    **fields: Any,
) -> Listing:
    number = next(_counter)
    listing = Listing.objects.create(
        publisher=publisher,
        category=category,
        kind=fields.pop("kind", Listing.Kind.AGENT),
        slug=fields.pop("slug", f"listing-{number}"),
        title=title,
        summary=summary or title,
        description=description,
        tags=tags or [],
        published_at=fields.pop("published_at", timezone.now()),
        **fields,
    )
    if approved:
        version = ListingVersion.objects.create(
            listing=listing, number=1, definition={}, status=ListingVersion.Status.APPROVED
        )
        listing.current_version = version
        listing.save(update_fields=["current_version"])
    if index:
        index_listing(listing)
    return listing
