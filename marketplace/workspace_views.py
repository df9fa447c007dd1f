"""A workspace's marketplace page (/w/<slug>/marketplace/): what it installed (with "update
available", the changelog and the diff, upgrade or stay pinned, uninstall), what it published
(each version's moderation state and the reason staff gave, reviews to reply to), and the
publish form."""

from __future__ import annotations

import difflib
import json
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from agents.models import Agent
from core.exceptions import ApplicationError, NotFound
from core.forms import form_add_application_error
from marketplace import purchases, selectors, services
from marketplace.models import ListingVersion, Review
from marketplace.workspace_forms import PublishForm, ReplyForm
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


def _installed_rows(access: Access) -> list[dict[str, Any]]:
    rows = []
    for install in selectors.workspace_installs(access=access, definitions=True):
        current = install.listing.current_version
        newer = current is not None and current.number > install.version.number
        rows.append(
            {
                "install": install,
                "update": current if newer else None,
                "diff": _diff(install.version, current) if newer and current else [],
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


@require_http_methods(["GET", "POST"])
def marketplace_publish(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    form = PublishForm(request.POST or None, sources=_sources())
    if request.method == "POST" and form.is_valid():
        try:
            version = services.listing_publish(access=access, **form.service_arguments())
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(
                request,
                f"Version {version.number} of “{version.listing.title}” was sent for review. "
                "You will see the decision here.",
            )
            return redirect("marketplace_workspace", workspace_slug=access.workspace.slug)
    return render(
        request,
        "marketplace/publish.html",
        {"form": form},
        status=400 if form.errors else 200,
    )


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
