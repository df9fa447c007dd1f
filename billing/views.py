"""The workspace's Billing page (owners and admins): plan, usage against every allowance,
overage, plans to move to, invoices; Upgrade goes to Stripe Checkout and Manage payment to
Stripe's customer portal. The plan itself changes only when Stripe's webhook confirms it."""

from __future__ import annotations

from urllib.parse import urlencode
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from djstripe.models import WebhookEndpoint
from djstripe.models.webhooks import get_remote_ip

from billing import invoices, subscriptions, usage, webhooks
from billing.stripe_client import secret_key_setting, stripe_mode
from core.exceptions import ApplicationError
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm


def billing(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.BILLING_VIEW)
    summary = usage.billing_summary(access=access)
    return render(
        request,
        "billing/billing.html",
        {
            "summary": summary,
            "plans": usage.plans_offered(),
            "invoices": invoices.invoices_list(access=access)[:24],
            "mode": stripe_mode(),
            "key_setting": secret_key_setting(),
            "quotas_on": settings.BILLING_QUOTAS,
            "can_manage": access.can(Perm.BILLING_MANAGE),
            "checkout": request.GET.get("checkout", ""),
        },
    )


def _back(request: AppRequest, slug: str, **query: str) -> str:
    url = reverse("billing", kwargs={"workspace_slug": slug})
    return request.build_absolute_uri(f"{url}?{urlencode(query)}" if query else url)


@require_POST
def billing_upgrade(request: AppRequest) -> HttpResponse:
    """Start Stripe Checkout for the chosen plan and interval and send the browser there."""
    access = page_access(request, Perm.BILLING_MANAGE)
    slug = access.workspace.slug
    try:
        url = subscriptions.checkout_start(
            workspace_id=access.workspace.pk,
            plan_key=request.POST.get("plan", ""),
            interval=request.POST.get("interval", ""),
            success_url=_back(request, slug, checkout="done"),
            cancel_url=_back(request, slug, checkout="canceled"),
            actor_id=access.actor_id,
        )
    except ApplicationError as exc:  # unknown plan, already subscribed, billing off, Stripe down
        messages.error(request, exc.message)
        return redirect("billing", workspace_slug=slug)
    return redirect(url)


@require_POST
def billing_portal(request: AppRequest) -> HttpResponse:
    """Open Stripe's customer portal (card, plan change, cancel) for this workspace."""
    access = page_access(request, Perm.BILLING_MANAGE)
    slug = access.workspace.slug
    try:
        url = subscriptions.portal_start(
            workspace_id=access.workspace.pk, return_url=_back(request, slug)
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("billing", workspace_slug=slug)
    return redirect(url)


@csrf_exempt
@login_not_required
@require_POST
def stripe_webhook(request: HttpRequest, uuid: UUID) -> HttpResponse:
    """A Stripe webhook delivery: stored, its signature checked, queued for the workers; 200
    with the trigger's id, 400 when unsigned or the signature fails, 404 for an unknown
    endpoint."""
    if "stripe-signature" not in request.headers:  # not stored: nothing to fill the log with
        return HttpResponseBadRequest()
    endpoint = get_object_or_404(WebhookEndpoint, djstripe_uuid=uuid)
    trigger = webhooks.webhook_receive(
        endpoint=endpoint,
        headers=dict(request.headers),
        body=request.body.decode(request.encoding or "utf-8", errors="replace"),
        remote_ip=get_remote_ip(request),
    )
    if not trigger.valid:
        return HttpResponseBadRequest()
    return HttpResponse(str(trigger.pk))
