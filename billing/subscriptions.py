"""Subscribing a workspace through Stripe (issue 14): Checkout for a new subscription, the
customer portal for everything after (card, plan change, cancel).

    checkout_start(workspace_id=.., plan_key="pro", interval="month", success_url=..,
                   cancel_url=.., actor_id=..)   # -> the Stripe Checkout URL
    portal_start(workspace_id=.., return_url=..) # -> the customer portal URL

Invariant: checkout and the portal never change the workspace's plan. The plan changes only in
`billing.subscription_state.subscription_sync`, from the subscription as Stripe has it when a
webhook arrives (billing/webhooks.py), never on the success redirect, which anyone can open.

Idempotency keys (every write carries one, made from our ids):
- the customer: `workspace-<id>-customer`, so two concurrent first checkouts create one customer;
- a checkout or portal session: `workspace-<id>-checkout-<plan>-<interval>-<nonce>` with a
  fresh nonce per attempt. A session is not a charge, and each click must get a usable (not
  expired or completed) session, so the key only makes the SDK's own retries of one attempt
  safe.

One payable checkout per workspace: starting a checkout first expires the workspace's previous
open session (`stripe_checkout_session_id`), under a per-workspace advisory lock, so two tabs
or two admins cannot both pay for a subscription. If the previous one was paid already (its
webhook not yet applied), the new checkout is refused.
"""

from __future__ import annotations

import secrets

import stripe
from django.db import connection, transaction
from stripe.params.checkout import SessionCreateParamsLineItem

from billing.models import Plan, WorkspacePlan
from billing.plans import workspace_plan
from billing.stripe_client import stripe_client, stripe_errors
from billing.stripe_sync import INTERVALS
from core.exceptions import ApplicationError
from core.recovery import advisory_key
from tenants.models import Workspace

ACTIVE = (WorkspacePlan.Status.ACTIVE, WorkspacePlan.Status.TRIALING)


class CheckoutRefused(ApplicationError):
    """A checkout or portal request that cannot be served as asked (the message says why and
    what to do instead)."""

    code = "checkout_refused"
    status = 409


def _plan_for_checkout(plan_key: str, interval: str) -> Plan:
    if interval not in INTERVALS:
        raise CheckoutRefused(
            f"Unknown billing interval “{interval}”: choose month or year.",
            fields={"interval": ["Choose month or year."]},
        )
    plan = Plan.objects.filter(key=plan_key).first()
    if plan is None or not plan.is_public:
        raise CheckoutRefused(
            f"There is no plan “{plan_key}” to subscribe to: choose one of the plans offered "
            "on the Billing page.",
            fields={"plan": ["Not an offered plan."]},
        )
    if plan.is_free:
        raise CheckoutRefused(
            f"{plan.name} is free: there is nothing to pay. A workspace returns to it by "
            "cancelling its subscription (Manage payment).",
            fields={"plan": ["Free plans need no checkout."]},
        )
    if interval == "year" and not plan.yearly_offered:
        # Stripe bills a subscription's items on one interval, and overage is metered monthly.
        raise CheckoutRefused(
            f"{plan.name} is paid monthly (it bills AI spend past its allowance each month, "
            "or has no yearly price): choose the monthly price.",
            fields={"interval": ["Monthly only for this plan."]},
        )
    return plan


def _refuse_if_subscribed(row: WorkspacePlan, plan: Plan) -> None:
    """A workspace has at most one subscription: while it has one, changes go through the
    customer portal (a second Checkout would charge twice)."""
    if not row.stripe_subscription_id:
        return
    if row.status not in ACTIVE:
        raise CheckoutRefused(
            f"The last payment for this workspace's {row.plan.name} subscription failed: fix "
            "the card with Manage payment first, then change plans there.",
            fields={"plan": ["Settle the failed payment in Manage payment."]},
        )
    if row.plan_id == plan.pk:
        raise CheckoutRefused(
            f"This workspace is already subscribed to {plan.name}.",
            fields={"plan": ["Already the current plan."]},
        )
    raise CheckoutRefused(
        f"This workspace already has a {row.plan.name} subscription: change it to {plan.name} "
        "with Manage payment (a second subscription would charge twice).",
        fields={"plan": ["Change plans in Manage payment."]},
    )


def _line_items(
    client: stripe.StripeClient, plan: Plan, interval: str
) -> list[SessionCreateParamsLineItem]:
    """The checkout's line items: the plan's recurring Price, and its metered overage Price
    when one exists (metered prices take no quantity)."""
    # the overage price (metered) is created by billing_sync_plans for plans that allow it
    base_key, overage_key = plan.lookup_key(interval), plan.lookup_key("overage")
    with stripe_errors("look up the plan's price"):
        found = client.v1.prices.list(
            params={"lookup_keys": [base_key, overage_key], "active": True, "limit": 10}
        ).data
    by_key = {price.lookup_key: price for price in found}
    base = by_key.get(base_key)
    if base is None:
        raise CheckoutRefused(
            f"{plan.name} has no Stripe price for the {interval}ly interval yet (lookup key "
            f"{base_key}): an operator must run manage.py billing_sync_plans.",
            fields={"plan": ["Not yet mirrored to Stripe."]},
        )
    items: list[SessionCreateParamsLineItem] = [{"price": base.id, "quantity": 1}]
    if (overage := by_key.get(overage_key)) is not None:
        items.append({"price": overage.id})
    return items


def customer_ensure(*, client: stripe.StripeClient, workspace_id: int) -> str:
    """The workspace's Stripe Customer id, created on first use (metadata: the workspace id)
    and stored on its plan row. Safe concurrently: the idempotency key makes Stripe answer
    both creators with one customer, and only an empty id is overwritten."""
    row = workspace_plan(workspace=Workspace.objects.get(pk=workspace_id))
    if row.stripe_customer_id:
        return row.stripe_customer_id
    workspace = row.workspace
    with stripe_errors("create the workspace's Stripe customer"):
        customer = client.v1.customers.create(
            params={
                "name": workspace.name,
                "metadata": {"workspace_id": str(workspace_id), "workspace_slug": workspace.slug},
            },
            options={"idempotency_key": f"workspace-{workspace_id}-customer"},
        )
    WorkspacePlan.objects.filter(workspace_id=workspace_id, stripe_customer_id="").update(
        stripe_customer_id=customer.id
    )
    return str(
        WorkspacePlan.objects.values_list("stripe_customer_id", flat=True).get(
            workspace_id=workspace_id
        )
    )


def checkout_start(
    *,
    workspace_id: int,
    plan_key: str,
    interval: str,
    success_url: str,
    cancel_url: str,
    actor_id: int | None,
) -> str:
    """A Stripe Checkout Session (subscription mode) for `plan_key` billed every `interval`;
    returns its URL. The caller has checked that the actor may manage billing. Refuses an
    unknown, private or free plan, a plan not mirrored to Stripe, and a workspace that already
    has an active subscription. Billing off or Stripe unreachable: ServiceUnavailable (503)."""
    client = stripe_client()
    plan = _plan_for_checkout(plan_key, interval)
    row = workspace_plan(workspace=Workspace.objects.get(pk=workspace_id))
    _refuse_if_subscribed(row, plan)
    line_items = _line_items(client, plan, interval)
    customer_id = customer_ensure(client=client, workspace_id=workspace_id)
    with transaction.atomic():
        with connection.cursor() as cursor:  # one checkout start per workspace at a time
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [advisory_key("checkout", row.pk)])
        previous = WorkspacePlan.objects.values_list("stripe_checkout_session_id", flat=True).get(
            pk=row.pk
        )
        if previous:
            _expire_previous_checkout(client, previous, plan)
        url, session_id = _checkout_session(
            client,
            workspace_id=workspace_id,
            plan=plan,
            interval=interval,
            customer_id=customer_id,
            line_items=line_items,
            success_url=success_url,
            cancel_url=cancel_url,
            actor_id=actor_id,
        )
        WorkspacePlan.objects.filter(pk=row.pk).update(stripe_checkout_session_id=session_id)
    return url


def _expire_previous_checkout(client: stripe.StripeClient, session_id: str, plan: Plan) -> None:
    """Expire the workspace's previous Checkout Session; refuse a new one if that one was
    paid (the subscription it made is on its way by webhook)."""
    with stripe_errors("close the previous checkout"):
        try:
            client.v1.checkout.sessions.expire(session_id)
            return
        except stripe.InvalidRequestError:  # not open any more: expired, or completed
            pass
    with stripe_errors("look up the previous checkout"):
        previous = client.v1.checkout.sessions.retrieve(session_id)
    if previous.status == "complete":
        raise CheckoutRefused(
            f"A checkout for this workspace was just paid: its new plan appears on the Billing "
            f"page within a minute. Change it to {plan.name} afterwards with Manage payment.",
            fields={"plan": ["A checkout was just paid."]},
        )


def _checkout_session(
    client: stripe.StripeClient,
    *,
    workspace_id: int,
    plan: Plan,
    interval: str,
    customer_id: str,
    line_items: list[SessionCreateParamsLineItem],
    success_url: str,
    cancel_url: str,
    actor_id: int | None,
) -> tuple[str, str]:
    metadata = {
        "workspace_id": str(workspace_id),
        "plan_key": plan.key,
        "interval": interval,
        "actor_id": "" if actor_id is None else str(actor_id),
    }
    nonce = secrets.token_hex(8)
    with stripe_errors("start the checkout"):
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer": customer_id,
                "client_reference_id": str(workspace_id),
                "line_items": line_items,
                "success_url": success_url,
                "cancel_url": cancel_url,
                "metadata": metadata,
                "subscription_data": {
                    "metadata": {"workspace_id": str(workspace_id), "plan_key": plan.key}
                },
            },
            options={
                "idempotency_key": (
                    f"workspace-{workspace_id}-checkout-{plan.key}-{interval}-{nonce}"
                )
            },
        )
    if not session.url:
        raise CheckoutRefused("Stripe returned a checkout session without a page to pay on.")
    return session.url, session.id


def portal_start(*, workspace_id: int, return_url: str) -> str:
    """A Stripe customer portal session (card, invoices, plan change, cancel) for the
    workspace's customer; returns its URL. A workspace that never subscribed has no customer
    yet and is told to upgrade first."""
    client = stripe_client()
    row = workspace_plan(workspace=Workspace.objects.get(pk=workspace_id))
    if not row.stripe_customer_id:
        raise CheckoutRefused(
            "This workspace has no payment details at Stripe yet: subscribe to a paid plan "
            "with Upgrade first; Manage payment is for workspaces that have subscribed."
        )
    with stripe_errors("open the customer portal"):
        session = client.v1.billing_portal.sessions.create(
            params={"customer": row.stripe_customer_id, "return_url": return_url},
            options={"idempotency_key": f"workspace-{workspace_id}-portal-{secrets.token_hex(8)}"},
        )
    return str(session.url)
