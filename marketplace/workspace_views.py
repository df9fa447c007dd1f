"""A workspace's marketplace page (/w/<slug>/marketplace/): what it installed (with "update
available", the changelog and the diff, upgrade or stay pinned, uninstall), what it published
(each version's moderation state and the reason staff gave, reviews to reply to), and the
publish form with its price, the platform fee and the payouts account (set up on Stripe's
hosted onboarding pages)."""

from __future__ import annotations

import difflib
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents.models import Agent
from billing.stripe_client import billing_mode, stripe_mode
from core.exceptions import ApplicationError, NotFound, ServiceUnavailable
from core.forms import form_add_application_error
from evals.selectors import gate_policy, suites_list
from marketplace import auto_upgrade, connect, fees, pricing, purchases, selectors, services
from marketplace.models import Category, Listing, ListingVersion, Purchase, Review
from marketplace.workspace_forms import (
    AutoUpgradeForm,
    PayoutsSetupForm,
    PublishForm,
    ReplyForm,
)
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Access, Perm
from workflows.models import Workflow


def _diff(old: ListingVersion, new: ListingVersion) -> list[str]:
    def lines(version: ListingVersion) -> list[str]:
        return json.dumps(version.definition, indent=2, sort_keys=True).splitlines()

    return list(
        difflib.unified_diff(
            lines(old), lines(new), f"version {old.number}", f"version {new.number}", lineterm=""
        )
    )


def _suites(access: Access) -> list[tuple[int, str]]:
    return list(suites_list(access=access).order_by("name").values_list("pk", "name"))


def _bought_listing_ids(access: Access) -> set[int]:
    return set(
        Purchase.objects.filter(buyer=access.workspace, status__in=purchases.RUNNABLE).values_list(
            "listing_id", flat=True
        )
    )


def _installed_rows(access: Access) -> list[dict[str, Any]]:
    rows = []
    can_manage = access.can(Perm.WORKSPACE_UPDATE)
    suites = _suites(access) if can_manage else []
    bought: set[int] | None = None  # listings this workspace has a runnable purchase of
    for install in selectors.workspace_installs(access=access, definitions=True):
        current = install.listing.current_version
        newer = current is not None and current.number > install.version.number
        unpaid = ""
        if newer and current is not None and current.pricing != Listing.Pricing.FREE:
            if bought is None:
                bought = _bought_listing_ids(access) if pricing.checkout_active() else set()
            if pricing.checkout_active() and install.listing_id not in bought:
                unpaid = pricing.price_terms(current)
        auto_form = (
            AutoUpgradeForm(
                initial={"enabled": install.auto_upgrade, "suite": install.gate_suite_id},
                suites=suites,
                prefix=f"auto-{install.pk}",
            )
            if can_manage
            else None
        )
        rows.append(
            {
                "install": install,
                "update": current if newer else None,
                # a paid version's definition is what buyers pay for: no diff before buying
                "diff": _diff(install.version, current) if newer and current and not unpaid else [],
                # the new version is paid and not bought: "buy it first", not an upgrade button
                "unpaid_terms": unpaid,
                "auto_form": auto_form,
            }
        )
    return rows


@require_http_methods(["GET"])
def marketplace_workspace(request: AppRequest) -> HttpResponse:
    access = page_access(request)
    return render(
        request,
        "marketplace/workspace.html",
        {
            "installed": _installed_rows(access),
            "published": list(selectors.workspace_listings(access=access)),
            "reviews": selectors.reviews_awaiting_reply(access=access),
            "reply_form": ReplyForm(),
            "can_build": access.can(Perm.BUILD),
            "purchases": list(purchases.workspace_purchases(access=access)[:50]),
            "can_buy": access.can(Perm.BILLING_MANAGE),
            "can_see_earnings": access.can(Perm.BILLING_VIEW),
            "upgrade_gate": gate_policy().require_for_upgrade,
        },
    )


@require_POST
def purchase_cancel(request: AppRequest, purchase_id: int) -> HttpResponse:
    access = page_access(request, Perm.BILLING_MANAGE)
    try:
        purchase = purchases.purchase_cancel(access=access, purchase_id=purchase_id)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        ends = f" on {purchase.current_period_end:%-d %b %Y}" if purchase.current_period_end else ""
        messages.success(
            request,
            f"“{purchase.listing.title}” is cancelled: it keeps running until its paid period "
            f"ends{ends}, then stops. Nothing more is charged.",
        )
    return redirect("marketplace_workspace", workspace_slug=access.workspace.slug)


def _sources() -> list[tuple[str, str]]:
    agents = Agent.objects.filter(archived_at__isnull=True, listing_version_id__isnull=True)
    workflows = Workflow.objects.filter(
        archived_at__isnull=True, listing_version_id__isnull=True, active_version__isnull=False
    )
    return [(f"agent:{a.pk}", f"Agent · {a.name}") for a in agents.order_by("name")] + [
        (f"workflow:{w.pk}", f"Workflow · {w.name}") for w in workflows.order_by("name")
    ]


def _listing_of_source(access: Access, source: str) -> Listing | None:
    """The listing of this workspace's that the agent or workflow `source` ("agent:3") was
    published to before: publishing it again submits a new version of that listing."""
    kind, _, source_id = (source or "").partition(":")
    if kind not in Listing.Kind.values or not source_id.isdigit():
        return None
    return (
        Listing.objects.filter(
            publisher__workspace=access.workspace,
            versions__source_kind=kind,
            versions__source_id=int(source_id),
        )
        .select_related("category")
        .defer("search_vector", "embedding")
        .first()
    )


def _fee_preview(data: QueryDict, listing: Listing | None = None) -> dict[str, Any]:
    """The platform fee for the category and price typed so far, and what the creator receives
    per sale (`fees.split`): shown before they submit. For a new version of a published listing
    the listing's own category decides (it never changes; purchases pay its fee), whatever the
    form says."""
    category: Category | None
    if listing is not None and listing.published_at is not None:
        category = listing.category
        percent = fees.fee_percent(listing)
    else:
        category = Category.objects.filter(slug=data.get("category") or "").first()
        percent = fees.fee_percent(Listing(category=category))
    price_model = data.get("pricing") or Listing.Pricing.FREE
    try:
        price = Decimal(data.get("price") or "0")
    except InvalidOperation:
        price = Decimal(0)
    cents = int(price * 100) if price.is_finite() and 0 < price <= 10_000 else 0
    preview: dict[str, Any] = {
        "percent": f"{percent.normalize():f}",  # 20.00 → "20", 12.50 → "12.5"
        "category": category,
        "category_fixed": listing is not None and listing.published_at is not None,
        "price_cents": cents,
    }
    if price_model != Listing.Pricing.FREE and cents:
        preview["fee_cents"], preview["creator_cents"] = fees.split(cents, percent)
        preview["per"] = {
            Listing.Pricing.PER_RUN.value: "per successful run",
            Listing.Pricing.MONTHLY.value: "per month",
        }.get(price_model, "per sale")
    return preview


def _payouts_context(access: Access) -> dict[str, Any]:
    return {
        "payouts": connect.payout_status(connect.creator_account_of(access=access)),
        "billing_off": billing_mode() if stripe_mode() == "off" else "",
        "can_manage_payouts": access.can(Perm.BILLING_MANAGE),
        "payouts_form": PayoutsSetupForm(),
    }


@require_http_methods(["GET", "POST"])
def marketplace_publish(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    data = request.POST if request.method == "POST" else request.GET
    listing = _listing_of_source(access, data.get("source", ""))
    if request.method == "POST":
        form = PublishForm(request.POST, sources=_sources(), listing=listing)
    else:
        initial = {"source": data["source"]} if listing is not None else {}
        form = PublishForm(sources=_sources(), listing=listing, initial=initial)
    status = 400
    if request.method == "POST" and form.is_valid():
        try:
            version = services.listing_publish(access=access, **form.service_arguments())
        except ApplicationError as exc:
            form_add_application_error(form, exc)
            status = exc.status  # e.g. 409: the release gate wants a passing evaluation
        else:
            messages.success(
                request,
                f"Version {version.number} of “{version.listing.title}” was sent for review. "
                "You will see the decision here.",
            )
            return redirect("marketplace_workspace", workspace_slug=access.workspace.slug)
    return _publish_page(
        request, access, form, status=status if form.errors else 200, listing=listing
    )


def _publish_page(
    request: AppRequest,
    access: Access,
    form: PublishForm,
    *,
    status: int = 200,
    payouts_error: str = "",
    listing: Listing | None = None,
) -> HttpResponse:
    fee_data = QueryDict(mutable=True)
    if form.is_bound:
        fee_data.update(request.POST)
    else:  # what the form starts from (a new version starts from the listing's price)
        for name in ("category", "pricing", "price"):
            value = form[name].value()
            if value is not None:
                fee_data[name] = str(value)
    return render(
        request,
        "marketplace/publish.html",
        {
            "form": form,
            "listing": listing,
            "fee": _fee_preview(fee_data, listing),
            **_payouts_context(access),
            "payouts_error": payouts_error,
        },
        status=status,
    )


def _stripe_unavailable(
    request: AppRequest, access: Access, exc: ServiceUnavailable
) -> HttpResponse:
    """Billing off or Stripe down: the Publish page, answered 503, saying so by Payouts."""
    form = PublishForm(sources=_sources())
    return _publish_page(request, access, form, status=exc.status, payouts_error=exc.message)


@require_GET
def publish_fee(request: AppRequest) -> HttpResponse:
    """The fee preview for the category and price in the query (htmx, as the creator types)."""
    access = page_access(request, Perm.BUILD)
    listing = _listing_of_source(access, request.GET.get("source", ""))
    return render(
        request, "marketplace/_publish_fee.html", {"fee": _fee_preview(request.GET, listing)}
    )


def _onboarding_urls(request: AppRequest, access: Access) -> dict[str, str]:
    slug = access.workspace.slug
    return {
        "refresh_url": request.build_absolute_uri(
            reverse("marketplace_payouts_refresh", kwargs={"workspace_slug": slug})
        ),
        "return_url": request.build_absolute_uri(
            reverse("marketplace_payouts_return", kwargs={"workspace_slug": slug})
        ),
    }


@require_POST
def payouts_setup(request: AppRequest) -> HttpResponse:
    """Set up payouts (or continue): off to Stripe's hosted onboarding. Answered with a page
    that goes on to Stripe (meta refresh, and a link), not a redirect: the CSP's
    `form-action 'self'` blocks a form submission that redirects to another origin."""
    access = page_access(request, Perm.BILLING_MANAGE)
    form = PayoutsSetupForm(request.POST)
    country = form.cleaned_data["country"] if form.is_valid() else connect.DEFAULT_COUNTRY
    try:
        url = connect.payouts_start(
            access=access, country=country, **_onboarding_urls(request, access)
        )
    except ServiceUnavailable as exc:
        return _stripe_unavailable(request, access, exc)
    return render(request, "marketplace/payouts_continue.html", {"onboarding_url": url})


@require_GET
def payouts_refresh(request: AppRequest) -> HttpResponse:
    """Stripe sends the creator here when their onboarding link expired: a fresh one."""
    access = page_access(request, Perm.BILLING_MANAGE)
    try:
        url = connect.onboarding_link(access=access, **_onboarding_urls(request, access))
    except ServiceUnavailable as exc:
        return _stripe_unavailable(request, access, exc)
    return HttpResponseRedirect(url)


@require_GET
def payouts_return(request: AppRequest) -> HttpResponse:
    """Back from Stripe's onboarding (done or not): re-read the account and say where it is."""
    access = page_access(request, Perm.BILLING_MANAGE)
    try:
        account = connect.creator_account_refresh(access=access)
    except ServiceUnavailable as exc:
        messages.warning(request, f"{exc.message} Your payouts status will update shortly.")
    else:
        if account is not None and account.onboarded:
            messages.success(request, "Payouts are set up: you can publish paid versions.")
        elif account is not None:
            messages.warning(
                request, "Payouts are not set up yet: Stripe still needs the details listed."
            )
    return redirect("marketplace_publish", workspace_slug=access.workspace.slug)


@require_POST
def install_upgrade(request: AppRequest, install_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    install = selectors.workspace_install(access=access, install_id=install_id)
    try:
        upgraded = services.upgrade(access=access, install=install)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"“{upgraded.listing.title}” upgraded to version {upgraded.version.number}."
        )
    return redirect("marketplace_workspace", workspace_slug=access.workspace.slug)


@require_POST
def install_auto_upgrade(request: AppRequest, install_id: int) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    install = selectors.workspace_install(access=access, install_id=install_id)
    form = AutoUpgradeForm(request.POST, suites=_suites(access), prefix=f"auto-{install.pk}")
    if not form.is_valid():
        messages.error(request, "Choose one of this workspace's evaluation suites.")
        return redirect("marketplace_workspace", workspace_slug=access.workspace.slug)
    enabled = bool(form.cleaned_data["enabled"])
    try:
        auto_upgrade.auto_upgrade_set(
            access=access, install=install, enabled=enabled, suite_id=form.cleaned_data["suite"]
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"“{install.listing.title}” now upgrades automatically to new versions."
            if enabled
            else f"“{install.listing.title}” stays on its version until you upgrade it.",
        )
    return redirect("marketplace_workspace", workspace_slug=access.workspace.slug)


@require_POST
def install_uninstall(request: AppRequest, install_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    install = selectors.workspace_install(access=access, install_id=install_id)
    try:
        services.uninstall(access=access, install=install)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"“{install.listing.title}” uninstalled; its copy is archived.")
    return redirect("marketplace_workspace", workspace_slug=access.workspace.slug)


@require_POST
def review_reply(request: AppRequest, review_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    review = Review.objects.filter(pk=review_id).select_related("listing").first()
    if review is None:
        raise NotFound("No such review.")
    form = ReplyForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Write a reply first.")
    else:
        try:
            services.review_reply(access=access, review=review, text=form.cleaned_data["text"])
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Your reply is published.")
    return redirect("marketplace_workspace", workspace_slug=access.workspace.slug)
