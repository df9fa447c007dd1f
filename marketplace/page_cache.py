"""Rendered public marketplace pages (the front page and search results), kept in Redis.

What is cached is rendered without the request (`render_to_string` with no request: no
context processors, no user, no session, no CSRF token) from public listings only, so it is the
same for every visitor and cannot hold anything about who asked; the page around it (the
navigation, the signed-in person) is rendered per request as before. The key is the query
string's search parameters, normalised; each entry carries the generation it was rendered in:
any save or delete of a listing, its versions, a category or a publisher starts a new
generation, and an entry of an older one is never served again (docs/decisions.md 99).

An entry is fresh for `MARKETPLACE_PAGE_CACHE_SECONDS` and kept as long again (decision 129).
Once it is stale, the first request that takes the entry's lock renders it again while every
other request keeps serving the stale copy, so the page is rendered once per expiry, not by
every request that arrives during a render. Figures updated in place (installs, run
statistics, ratings) thus show within `MARKETPLACE_PAGE_CACHE_SECONDS` plus one render, and
within twice that at most (a regenerator that died: its lock lapses after
`REGENERATE_LOCK_SECONDS`; an entry not asked for that long is gone). The generation and the
entry are read in one round trip.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

GENERATION_KEY = "marketplace:pages:generation"
# How long the request that renders a stale entry again holds its lock: another request takes
# over when a render did not finish in this time.
REGENERATE_LOCK_SECONDS = 10


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
    return f"marketplace:pages:{digest}"


def cached_html(key: str, render: Callable[[], str], *, now: float | None = None) -> str:
    """The HTML kept under `key` for the current generation, or `render()` kept for next time
    (never kept when the setting is 0). A stale entry is rendered again by one request at a
    time; the others serve it meanwhile. `now`: the clock (seconds since the epoch)."""
    now = time.time() if now is None else now
    seconds = _seconds()
    if seconds <= 0:
        return render()
    found = cache.get_many([GENERATION_KEY, key])
    current = int(found.get(GENERATION_KEY) or 0)
    entry = found.get(key)
    if isinstance(entry, tuple) and len(entry) == 3 and entry[0] == current:
        _, fresh_until, html = entry
        if now < fresh_until or not cache.add(f"{key}:regenerating", 1, REGENERATE_LOCK_SECONDS):
            return str(html)
        try:
            html = render()
            cache.set(key, (current, now + seconds, html), seconds * 2)
        finally:
            cache.delete(f"{key}:regenerating")
        return html
    html = render()
    cache.set(key, (current, now + seconds, html), seconds * 2)
    return html


def connect_invalidation() -> None:
    """Any write to what the public pages show starts a new generation."""
    from marketplace.models import Category, Listing, ListingVersion, Publisher

    for model in (Listing, ListingVersion, Category, Publisher):
        uid = f"marketplace-pages-{model.__name__}"
        post_save.connect(bump_generation, sender=model, dispatch_uid=f"{uid}-save")
        post_delete.connect(bump_generation, sender=model, dispatch_uid=f"{uid}-delete")
