"""Public marketplace pages (no account needed): the front page with search, a category, a
listing and a publisher. Search results update as you type (htmx swaps the results partial)
and the same form works without JavaScript."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from accounts.requests import signed_in_user
from core.exceptions import ApplicationError, Conflict
from core.forms import form_add_application_error
from marketplace import page_cache, purchases, selectors, services
from marketplace.forms import SearchForm
from marketplace.models import Category, Install, Listing, Purchase, Review
from marketplace.pricing import billing_notice, price_terms
from marketplace.workspace_forms import FlagForm, InstallForm, ReviewForm, workspace_labels
from tenants.http import AppRequest
from tenants.models import Membership, Workspace
from tenants.permissions import Perm, role_can
from tenants.selectors import access_for_membership

PAGE_SIZE = 24


def _own_review_initial(listing: Listing, workspace: Workspace) -> dict[str, Any]:
    """The first eligible workspace's review, to edit in place (one review per workspace)."""
    review = Review.objects.filter(listing=listing, workspace=workspace).first()
    if review is None:
        return {"workspace": workspace.slug}
    return {"workspace": workspace.slug, "rating": review.rating, "text": review.text}


SEARCH_FIELDS = ("q", "category", "kind", "provider", "price", "rating", "sort", "page")


def _home_context(params: QueryDict, searching: bool) -> dict[str, object]:
    categories = list(Category.objects.all())
    form = SearchForm(params or None, categories=categories)
    context: dict[str, object] = {"form": form, "searching": searching}
    if searching:
        form.is_valid()
        page = form.page_number()
        result = selectors.listing_search(
            **form.filters(), limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, explain=True
        )
        query = params.copy()
        query.pop("page", None)
        context.update(
            result=result,
            page=page,
            query_string=query.urlencode(),
            categories=categories,
            filtered=any(
                params.get(k) for k in ("category", "kind", "provider", "price", "rating")
            ),
        )
    else:
        context["home"] = selectors.browse_home()
    return context


@require_GET
def marketplace_home(request: HttpRequest) -> HttpResponse:
    """Browse sections when nothing is asked; results when the form has a query or filter.
    The form and results are the same for every visitor: rendered without the request and
    cached per search (marketplace/page_cache.py); the page around them is rendered as usual."""
    params = request.GET
    searching = any(params.get(k) for k in SEARCH_FIELDS)
    htmx: HtmxDetails | None = getattr(request, "htmx", None)
    part = "results" if htmx and htmx.target == "market-results" else "body"
    template = "marketplace/_home_body.html" + ("#results" if part == "results" else "")
    html = page_cache.cached_html(
        page_cache.page_key(params, SEARCH_FIELDS, part),
        lambda: render_to_string(template, _home_context(params, searching)),
    )
    if part == "results":
        return HttpResponse(html)
    return render(request, "marketplace/home.html", {"body": mark_safe(html)})  # noqa: S308


def _listing_response(
    request: HttpRequest,
    listing: Listing,
    *,
    review_form: ReviewForm | None = None,
    flag_form: FlagForm | None = None,
    status: int = 200,
) -> HttpResponse:
    detail = selectors.listing_detail(slug=listing.slug)
    context: dict[str, Any] = {"listing": detail}
    if request.user.is_authenticated:
        builders = _memberships(request.user, Perm.BUILD)
        runners = _memberships(request.user, Perm.RUN)
        installs = list(
            Install.objects.filter(listing=detail, workspace__in=[m.workspace for m in runners])
        )
        installed = {i.workspace_id: i for i in installs if i.uninstalled_at is None}
        # Labels tell apart the user's workspaces of the same name, in every picker.
        mine = _user_workspaces(request.user)
        choices = [m.workspace for m in builders if m.workspace_id not in installed]
        managers = [m.workspace for m in _memberships(request.user, Perm.BILLING_MANAGE)]
        options = selectors.listing_buy_options(listing=detail, mine=mine, managers=managers)
        if options is not None:  # a paid listing: bought first (owners and admins), installed
            choices = [w for w in choices if w.pk in options.runnable_in]
            holders = [w for w, _ in options.bought]
            context.update(
                selling=options.pricing,
                own_listing=options.own_listing,
                unavailable=options.unavailable,
                terms=options.terms,
                buy_form=InstallForm(workspaces=options.buyers, among=mine)
                if options.buyers
                else None,
                bought=[
                    (label, purchase)
                    for (_, purchase), (_, label) in zip(
                        options.bought, workspace_labels(holders, mine), strict=True
                    )
                ],
                # Checkout came back before Stripe's webhook: the buttons refresh until it has.
                awaiting_payment=any(
                    p.status == Purchase.Status.PENDING for _, p in options.bought
                ),
            )
        reviewers = services.reviewer_workspaces(
            listing=detail, workspaces=[m.workspace for m in runners], installs=installs
        )
        if review_form is None and reviewers:
            review_form = ReviewForm(
                workspaces=reviewers,
                among=mine,
                initial=_own_review_initial(detail, reviewers[0]),
            )
        context.update(
            install_form=InstallForm(workspaces=choices, among=mine) if choices else None,
            installed_in=[
                label
                for _, label in workspace_labels(
                    [m.workspace for m in runners if m.workspace_id in installed], mine
                )
            ],
            review_form=review_form,
            editing_review=bool(review_form is not None and review_form.initial.get("rating")),
            flag_form=flag_form or FlagForm(),
        )
    return render(request, "marketplace/listing.html", context, status=status)


@require_GET
def listing_page(request: HttpRequest, slug: str) -> HttpResponse:
    return _listing_response(request, selectors.public_listing(slug=slug))


@require_GET
def publisher_page(request: HttpRequest, slug: str) -> HttpResponse:
    found = selectors.publisher_listings(slug=slug)
    return render(
        request,
        "marketplace/publisher.html",
        {"publisher": found.publisher, "listings": found.listings},
    )


# ------------------------------------------------------------------ actions from a listing page


def _memberships(user: Any, perm: Perm) -> list[Membership]:
    """The user's workspaces where their role allows `perm`."""
    return [
        m
        for m in Membership.objects.filter(user=user).select_related("workspace")
        if role_can(m.role, perm)
    ]


def _user_workspaces(user: Any) -> list[Workspace]:
    return [m.workspace for m in Membership.objects.filter(user=user).select_related("workspace")]


def _chosen(memberships: list[Membership], slug: str) -> Membership | None:
    """The membership of the workspace picked in a form, if it is among those offered."""
    return next((m for m in memberships if m.workspace.slug == slug), None)


def _listing_url(listing: Listing) -> str:
    return reverse("marketplace_listing", kwargs={"slug": listing.slug})


@login_required
@require_POST
def listing_install(request: AppRequest, slug: str) -> HttpResponse:
    listing = selectors.public_listing(slug=slug)
    memberships = _memberships(request.user, Perm.BUILD)
    form = InstallForm(
        request.POST,
        workspaces=[m.workspace for m in memberships],
        among=_user_workspaces(request.user),
    )
    membership = _chosen(memberships, request.POST.get("workspace", ""))
    if not form.is_valid() or membership is None:
        messages.error(request, "Choose a workspace where you can build.")
        return redirect(_listing_url(listing))
    access = access_for_membership(membership=membership, user=signed_in_user(request))
    try:
        services.install(access=access, listing=listing)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(_listing_url(listing))
    installed = f"“{listing.title}” installed in {access.workspace.name}."
    messages.success(request, " ".join(filter(None, [installed, billing_notice(listing)])))
    return redirect("marketplace_workspace", workspace_slug=access.workspace.slug)


@login_required
@require_POST
def listing_buy(request: AppRequest, slug: str) -> HttpResponse:
    """Start buying a paid listing for one of the user's workspaces (owners and admins): off
    to Stripe Checkout, which comes back to the listing; the purchase activates, and installs
    the listing, when Stripe's webhook confirms the payment."""
    listing = selectors.public_listing(slug=slug)
    membership = _chosen(
        _memberships(request.user, Perm.BILLING_MANAGE), request.POST.get("workspace", "")
    )
    if membership is None:
        messages.error(
            request, "Choose a workspace where you are an owner or admin: they buy listings."
        )
        return redirect(_listing_url(listing))
    access = access_for_membership(membership=membership, user=signed_in_user(request))
    back = request.build_absolute_uri(_listing_url(listing))
    try:
        started = purchases.purchase_start(
            access=access, listing=listing, success_url=back + "?checkout=done", cancel_url=back
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(_listing_url(listing))
    if started.checkout_url:
        return redirect(started.checkout_url)
    messages.success(
        request,
        f"“{listing.title}” is bought for {access.workspace.name} "
        f"({price_terms(started.purchase)}, charged to the card on file) and installed.",
    )
    return redirect("marketplace_workspace", workspace_slug=access.workspace.slug)


@login_required
@require_POST
def listing_review(request: AppRequest, slug: str) -> HttpResponse:
    listing = selectors.public_listing(slug=slug)
    memberships = _memberships(request.user, Perm.RUN)
    form = ReviewForm(
        request.POST,
        workspaces=services.reviewer_workspaces(
            listing=listing, workspaces=[m.workspace for m in memberships]
        ),
        among=_user_workspaces(request.user),
    )
    if form.is_valid():
        membership = _chosen(memberships, form.cleaned_data["workspace"])
        assert membership is not None  # noqa: S101 (the form's choices are these memberships)
        access = access_for_membership(membership=membership, user=signed_in_user(request))
        try:
            services.review_save(
                access=access,
                listing=listing,
                rating=form.cleaned_data["rating"],
                text=form.cleaned_data["text"],
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, "Thank you: your review is published.")
            return redirect(_listing_url(listing))
    return _listing_response(request, listing, review_form=form, status=400)


@login_required
@require_POST
def listing_flag(request: AppRequest, slug: str) -> HttpResponse:
    listing = selectors.public_listing(slug=slug)
    form = FlagForm(request.POST)
    if form.is_valid():
        try:
            services.flag_create(
                user=request.user,
                listing=listing,
                reason=form.cleaned_data["reason"],
                details=form.cleaned_data["details"],
            )
        except Conflict as exc:  # already flagged: not an error for the person reporting
            messages.info(request, exc.message)
            return redirect(_listing_url(listing))
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, "Thank you: staff will look at this listing.")
            return redirect(_listing_url(listing))
    return _listing_response(request, listing, flag_form=form, status=400)
