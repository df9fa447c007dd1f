"""Stripe's webhooks, end to end: the real stripe SDK talks to the loopback fake, which posts
signed events over HTTP to dj-stripe's view on the running test server (the endpoint registered
by `manage.py billing_webhook_endpoint`). dj-stripe fills its subscription and invoice tables;
our receivers move the workspace's plan row, forward only:

checkout → the plan (from the webhook, not the redirect); upgrade and downgrade; cancel at
period end → Free at the period's end; a failed payment → grace → read-only (runs refused, 402)
→ paid → restored with the count reset; every event delivered three times in random order
gives the same state; a forged or stale signature is refused (400) and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from typing import Any

import pytest
import stripe
from django.core.management import call_command
from djstripe.models import Invoice as DjstripeInvoice
from djstripe.models import Subscription as DjstripeSubscription
from djstripe.models import WebhookEndpoint

from billing.demo import seed_demo_plans
from billing.models import WorkspacePlan
from billing.stripe_client import stripe_client
from billing.stripe_sync import plans_sync
from billing.subscriptions import checkout_start
from tests.fakes import FakeStripe
from tests.helpers.personas import World

# dj-stripe checks a key's shape (24 characters or more after the prefix), as Stripe's keys are.
KEY = "sk_test_" + "platform" * 3


@dataclass
class Billing:
    fake: FakeStripe
    world: World
    endpoint: WebhookEndpoint
    client: stripe.StripeClient

    @property
    def row(self) -> WorkspacePlan:
        return WorkspacePlan.objects.select_related("plan").get(workspace=self.world.workspace_a)

    def subscribe(self, plan_key: str = "pro") -> str:
        """Checkout as the owner would, paid on the fake's page; returns the subscription id."""
        url = checkout_start(
            workspace_id=self.world.workspace_a.pk,
            plan_key=plan_key,
            interval="month",
            success_url="https://app.test/ok",
            cancel_url="https://app.test/billing",
            actor_id=self.world.owner.pk,
        )
        session_id = url.rsplit("/", 1)[1]
        return str(self.fake.complete_checkout(session_id)["id"])

    def price(self, lookup_key: str) -> str:
        (price,) = self.client.v1.prices.list(params={"lookup_keys": [lookup_key]}).data
        return price.id


def _start(fake: FakeStripe, world: World, live_server: Any, settings: Any) -> Billing:
    settings.STRIPE_TEST_SECRET_KEY = KEY
    settings.STRIPE_API_BASE = fake.base_url
    settings.BILLING_QUOTAS = True
    seed_demo_plans()
    plans_sync(stripe_client())
    call_command("billing_webhook_endpoint", url=live_server.url, stdout=StringIO())
    return Billing(fake, world, WebhookEndpoint.objects.get(), stripe_client())


@pytest.fixture
def billing(committed_world: World, live_server: Any, settings: Any) -> Iterator[Billing]:
    with FakeStripe() as fake:
        yield _start(fake, committed_world, live_server, settings)
    assert fake.server_errors == []


def _all_delivered(fake: FakeStripe) -> None:
    """Every event reached the platform and was accepted (the last attempt of each is a 2xx)."""
    last = {d.event_id: d.status for d in fake.deliveries}
    assert last, "no webhook was delivered"
    assert {status for status in last.values()} == {200}, fake.deliveries


def test_the_endpoint_command_registers_one_endpoint_with_its_secret(billing: Billing) -> None:
    endpoint = billing.endpoint
    assert endpoint.secret.startswith("whsec_")
    assert endpoint.url.endswith(f"/stripe/webhook/{endpoint.djstripe_uuid}/")
    out = StringIO()
    call_command("billing_webhook_endpoint", url=endpoint.url.split("/stripe/")[0], stdout=out)
    assert "kept" in out.getvalue()
    listed = billing.client.v1.webhook_endpoints.list().data
    assert [e.id for e in listed] == [endpoint.id]
    assert WebhookEndpoint.objects.count() == 1


def test_checkout_puts_the_workspace_on_the_plan_from_the_webhook(billing: Billing) -> None:
    subscription_id = billing.subscribe("pro")
    _all_delivered(billing.fake)
    row = billing.row
    assert row.plan.key == "pro"
    assert row.status == WorkspacePlan.Status.ACTIVE
    assert row.stripe_subscription_id == subscription_id
    sub = billing.fake.get(subscription_id)
    assert row.current_period_end.timestamp() == sub["items"]["data"][0]["current_period_end"]
    # dj-stripe's own tables, which the billing page lists invoices from
    assert DjstripeSubscription.objects.filter(id=subscription_id).exists()
    assert DjstripeInvoice.objects.filter(subscription_id=subscription_id).count() == 1
