"""Rendered public marketplace pages (the front page and search results), kept in Redis.

What is cached is rendered without the request (`render_to_string` with no request: no
context processors, no user, no session, no CSRF token) from public listings only, so it is the
same for every visitor and cannot hold anything about who asked; the page around it (the
navigation, the signed-in person) is rendered per request as before. The key is the query
string's search parameters, normalised, under a generation number: any save or delete of a
listing, its versions, a category or a publisher starts a new generation (the old entries are
never read again and expire), and figures updated in place (installs, run statistics, ratings)
show within `MARKETPLACE_PAGE_CACHE_SECONDS` (docs/decisions.md 99).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

GENERATION_KEY = "marketplace:pages:generation"


def _seconds() -> int:
    return int(settings.MARKETPLACE_PAGE_CACHE_SECONDS)


def generation() -> int:
    found = cache.get(GENERATION_KEY)
    return int(found) if found is not None else 0


def _bump() -> None:
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:  # the first write since Redis started
        cache.add(GENERATION_KEY, 1, None)


def bump_generation(**_: Any) -> None:
    """A new generation now and again once the write commits: a reader between the two would
    otherwise keep the rows from before the commit under the new number."""
    _bump()
    transaction.on_commit(_bump)


def page_key(params: Mapping[str, str], fields: tuple[str, ...], part: str) -> str:
    """The cache key of one rendering of the page for these search parameters."""
    normalised = "&".join(f"{name}={params.get(name, '').strip()}" for name in fields)
    digest = hashlib.sha256(f"{part}?{normalised}".encode()).hexdigest()[:32]
    return f"marketplace:pages:{generation()}:{digest}"


def cached_html(key: str, render: Callable[[], str]) -> str:
    """The HTML kept under `key`, or `render()` kept for next time (never kept when the
    setting is 0)."""
    seconds = _seconds()
    if seconds <= 0:
        return render()
    html = cache.get(key)
    if html is None:
        html = render()
        cache.set(key, html, seconds)
    return str(html)


def connect_invalidation() -> None:
    """Any write to what the public pages show starts a new generation."""
    from marketplace.models import Category, Listing, ListingVersion, Publisher

    for model in (Listing, ListingVersion, Category, Publisher):
        uid = f"marketplace-pages-{model.__name__}"
        post_save.connect(bump_generation, sender=model, dispatch_uid=f"{uid}-save")
        post_delete.connect(bump_generation, sender=model, dispatch_uid=f"{uid}-delete")
