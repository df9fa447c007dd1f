"""Public marketplace pages (no account needed): the front page with search, a category, a
listing and a publisher. Search results update as you type (htmx swaps the results partial)
and the same form works without JavaScript."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django_htmx.middleware import HtmxDetails

from core.exceptions import NotFound
from marketplace import selectors
from marketplace.forms import SearchForm
from marketplace.models import Category

PAGE_SIZE = 24


@require_GET
def marketplace_home(request: HttpRequest) -> HttpResponse:
    """Browse sections when nothing is asked; results when the form has a query or filter."""
    categories = list(Category.objects.all())
    form = SearchForm(request.GET or None, categories=categories)
    searching = any(
        request.GET.get(k)
        for k in ("q", "category", "kind", "provider", "price", "rating", "sort", "page")
    )
    context: dict[str, object] = {"form": form, "searching": searching}
    if searching:
        form.is_valid()
        page = form.page_number()
        result = selectors.listing_search(
            **form.filters(), limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        params = request.GET.copy()
        params.pop("page", None)
        context.update(result=result, page=page, query_string=params.urlencode())
    else:
        context["home"] = selectors.browse_home()
    template = "marketplace/home.html"
    htmx: HtmxDetails | None = getattr(request, "htmx", None)
    if htmx and htmx.target == "market-results":
        template += "#results"
    return render(request, template, context)


@require_GET
def listing_page(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        listing = selectors.listing_detail(slug)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    return render(request, "marketplace/listing.html", {"listing": listing})


@require_GET
def publisher_page(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        found = selectors.publisher_listings(slug)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    return render(
        request,
        "marketplace/publisher.html",
        {"publisher": found.publisher, "listings": found.listings},
    )
