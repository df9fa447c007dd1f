"""Buying paid listings in tests: a shop (the Stripe fake posting signed webhooks to the live
server, a fake model server, an onboarded publisher's paid listings) and the buyer's steps.
The `shop` fixture is in tests/fixtures/purchases.py."""

from __future__ import annotations

import http.client
import urllib.parse
from dataclasses import dataclass
from typing import Any

import stripe
from django_tenants.utils import schema_context

from accounts.models import User
from agents.models import Agent, AgentRun
from agents.services import agent_create
from marketplace import services
from marketplace.models import Category, CreatorAccount, Install, Listing, Purchase
from marketplace.purchases import purchase_start
from tests.fakes import FakeStripe
from tests.fakes.openai_api import FakeOpenAI
from tests.helpers.agents import run_now
from tests.helpers.personas import World, access_of

KEY = "sk_test_" + "platform" * 3
URLS = {"success_url": "https://app.test/l/x/?checkout=done", "cancel_url": "https://app.test/l/x/"}


@dataclass
class Shop:
    fake: FakeStripe
    model: FakeOpenAI
    world: World
    client: stripe.StripeClient
    staff: User

    @property
    def buyer(self) -> Any:
        return access_of(self.world.outsider, self.world.workspace_b)

    def listing(self, pricing: str, cents: int, *, title: str = "Summariser") -> Listing:
        """An approved agent listing of workspace A at `pricing`, by an onboarded publisher."""
        world = self.world
        seller = access_of(world.owner, world.workspace_a)
        Category.objects.get_or_create(slug="support", defaults={"name": "Support"})
        with schema_context(world.workspace_a.schema_name):
            agent = agent_create(access=seller, name=title, model="fake", system_prompt="Sum up.")
        version = services.listing_publish(
            access=seller,
            kind="agent",
            source_id=agent.pk,
            title=title,
            summary="Sums things up.",
            category_slug="support",
            tags=["Support"],
        )
        services.version_approve(user=self.staff, version=version)
        type(version).objects.filter(pk=version.pk).update(pricing=pricing, price_cents=cents)
        Listing.objects.filter(pk=version.listing_id).update(pricing=pricing, price_cents=cents)
        listing = Listing.objects.get(pk=version.listing_id)
        self.fake.connected_account("acct_creator")  # onboarded at Stripe: transfers active
        CreatorAccount.objects.get_or_create(
            publisher=listing.publisher,
            defaults={
                "stripe_account_id": "acct_creator",
                "details_submitted": True,
                "payouts_enabled": True,
                "transfers_active": True,
            },
        )
        return listing

    def buy(self, listing: Listing) -> Purchase:
        """Checkout as B's owner, paid on the fake's page (the webhooks arrive meanwhile)."""
        started = purchase_start(access=self.buyer, listing=listing, **URLS)
        assert started.checkout_url is not None
        pay(started.checkout_url)
        return Purchase.objects.get(pk=started.purchase.pk)

    def copy(self, listing: Listing) -> Agent:
        install = Install.objects.get(
            listing=listing, workspace=self.world.workspace_b, uninstalled_at=None
        )
        with schema_context(self.world.workspace_b.schema_name):
            return Agent.objects.get(pk=install.object_id)

    def run(self, agent: Agent, text: str = "Summarise this.") -> AgentRun:
        with schema_context(self.world.workspace_b.schema_name):
            return run_now(self.buyer, agent, text)


def pay(checkout_url: str) -> str:
    """Press Pay on the fake's hosted checkout page; returns where it sends the buyer back."""
    parts = urllib.parse.urlsplit(checkout_url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    connection.request("POST", parts.path + "/complete")
    answer = connection.getresponse()
    assert answer.status == 303
    connection.close()
    return answer.getheader("Location", "")


def sale(ref: str) -> Any:
    from marketplace.earnings import sale_entry  # money's module (issue 15)

    return sale_entry(ref)
