"""The rendered public pages' cache (marketplace/page_cache.py, decision 129): a stale page is
rendered again by one request while the others keep serving it, and after a write no request
is served a page of before the write, stale or not."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from marketplace import page_cache
from marketplace.models import Category, Publisher
from tests.helpers.marketplace import make_listing

pytestmark = pytest.mark.django_db

KEY = page_cache.page_key({"q": "cache test"}, ("q",), "body")


@pytest.fixture
def cached_pages(settings: Any) -> None:
    settings.MARKETPLACE_PAGE_CACHE_SECONDS = 30
    cache.clear()


class Renders:
    """A render function that counts its calls and returns a numbered page."""

    def __init__(self, during: Any = None) -> None:
        self.calls = 0
        self.during = during  # what a request arriving during the render is served
        self.served_meanwhile: list[str] = []

    def __call__(self) -> str:
        self.calls += 1
        if self.during is not None:
            self.served_meanwhile.append(self.during())
        return f"page {self.calls}"


def test_a_fresh_page_is_rendered_once(cached_pages: None) -> None:
    render = Renders()
    now = time.time()
    pages = [page_cache.cached_html(KEY, render, now=now + second) for second in (0, 10, 29)]
    assert pages == ["page 1"] * 3
    assert render.calls == 1


def test_a_stale_page_is_rendered_again_by_one_request_while_others_serve_it(
    cached_pages: None,
) -> None:
    now = time.time()
    assert page_cache.cached_html(KEY, lambda: "first", now=now) == "first"
    later = now + 31  # stale

    # Another request arrives while the first stale one renders: it is served the stale page
    # at once instead of rendering too.
    def meanwhile() -> str:
        return page_cache.cached_html(KEY, lambda: "rendered twice", now=later)

    render = Renders(during=meanwhile)
    assert page_cache.cached_html(KEY, render, now=later) == "page 1"
    assert render.served_meanwhile == ["first"]
    assert render.calls == 1
    # The new page is fresh from the render on, and the lock is free for the next expiry.
    assert page_cache.cached_html(KEY, Renders(), now=later + 29) == "page 1"
    assert page_cache.cached_html(KEY, lambda: "third", now=later + 31) == "third"


def test_a_render_that_fails_frees_the_page_for_the_next_request(cached_pages: None) -> None:
    now = time.time()
    page_cache.cached_html(KEY, lambda: "first", now=now)

    def broken() -> str:
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        page_cache.cached_html(KEY, broken, now=now + 31)
    assert page_cache.cached_html(KEY, lambda: "second", now=now + 31) == "second"


def test_after_a_write_no_request_is_served_the_page_of_before(
    cached_pages: None, publisher: Publisher, categories: dict[str, Category]
) -> None:
    now = time.time()
    page_cache.cached_html(KEY, lambda: "before the write", now=now)
    make_listing(publisher=publisher, category=categories["finance"], title="Ledger Keeper")

    # Fresh or stale, the entry is of the generation before the write: never served again,
    # not even to a request arriving while the new page renders.
    def meanwhile() -> str:
        return page_cache.cached_html(KEY, lambda: "after the write", now=now + 31)

    render = Renders(during=meanwhile)
    assert page_cache.cached_html(KEY, render, now=now + 1) == "page 1"
    assert render.served_meanwhile == ["after the write"]


def test_a_stale_front_page_shows_a_listing_written_since_at_once(
    client: Client,
    cached_pages: None,
    publisher: Publisher,
    categories: dict[str, Category],
) -> None:
    make_listing(publisher=publisher, category=categories["finance"], title="Ledger Keeper")
    assert "Ledger Keeper" in client.get(reverse("marketplace")).content.decode()
    listing = make_listing(
        publisher=publisher, category=categories["support"], title="Inbox Concierge"
    )
    listing.title = "Inbox Butler"
    listing.save()
    html = client.get(reverse("marketplace")).content.decode()
    assert 'title="Inbox Butler"' in html
    assert 'title="Inbox Concierge"' not in html


def test_the_cache_off_renders_every_time(settings: Any) -> None:
    settings.MARKETPLACE_PAGE_CACHE_SECONDS = 0
    render = Renders()
    assert [page_cache.cached_html(KEY, render) for _ in range(2)] == ["page 1", "page 2"]
