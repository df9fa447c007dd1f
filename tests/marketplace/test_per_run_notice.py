"""The notice above a copy's run form says what each run is charged: the price of the
workspace's purchase, which an upgrade keeps, not the price of the copy's version. A per-run
purchase upgraded to another per-run price or to a one-time version still shows its own price;
a one-time or monthly purchase upgraded to a per-run version shows none (it is not charged per
run). One query, on the run form's page."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.models import Agent
from agents.services import agent_create
from marketplace.models import Category, Listing, ListingVersion, Publisher, Purchase
from marketplace.templatetags.marketplace import installed_billing_notice
from tests.fakes import FakeStripe
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.django_db


def _listing(publisher: Publisher, categories: dict[str, Category], pricing: str) -> Listing:
    listing = make_listing(
        publisher=publisher,
        category=categories["support"],
        title="Summariser",
        pricing=pricing,
        price_cents=25,
        index=False,
    )
    assert listing.current_version is not None
    ListingVersion.objects.filter(pk=listing.current_version.pk).update(
        pricing=pricing, price_cents=25
    )
    return listing


def _buy(world: World, listing: Listing, pricing: str, cents: int) -> Purchase:
    assert listing.current_version is not None
    return Purchase.objects.create(
        buyer=world.workspace_b,
        listing=listing,
        version=listing.current_version,
        publisher=listing.publisher,
        pricing=pricing,
        unit_amount_cents=cents,
        fee_percent=Decimal(20),
        status=Purchase.Status.ACTIVE,
    )


def _upgraded_copy(world: World, listing: Listing, pricing: str, cents: int) -> Agent:
    """B's copy, moved to a new approved version of `listing` at another price (what an
    upgrade does to the copy; the purchase stays)."""
    version = ListingVersion.objects.create(
        listing=listing,
        number=2,
        definition={},
        status=ListingVersion.Status.APPROVED,
        pricing=pricing,
        price_cents=cents,
    )
    with schema_context(world.workspace_b.schema_name):
        agent = agent_create(
            access=access_of(world.outsider, world.workspace_b), name="Copy", model="offline:demo"
        )
        Agent.objects.filter(pk=agent.pk).update(listing_version_id=version.pk)
        agent.refresh_from_db()
        return agent


def _notice(world: World, agent: Agent, django_assert_num_queries: Any) -> str:
    with schema_context(world.workspace_b.schema_name):
        Agent.objects.exists()  # (the schema's search path is set on the first query)
        with django_assert_num_queries(1):
            return installed_billing_notice(agent.listing_version_id)["notice"]


def test_a_per_run_purchase_upgraded_to_a_cheaper_per_run_version_shows_its_own_price(
    world: World,
    fake_stripe: FakeStripe,
    publisher: Publisher,
    categories: dict[str, Category],
    django_assert_num_queries: Any,
) -> None:
    listing = _listing(publisher, categories, "per_run")
    _buy(world, listing, Purchase.Pricing.PER_RUN, 25)
    agent = _upgraded_copy(world, listing, "per_run", 10)

    notice = _notice(world, agent, django_assert_num_queries)

    assert notice.startswith("$0.25 per successful run, added to this workspace's next invoice")
    assert "$0.10" not in notice
    # and so does the run form
    page = Client()
    page.force_login(world.outsider)
    url = reverse(
        "agent_detail", kwargs={"workspace_slug": world.workspace_b.slug, "agent_id": agent.pk}
    )
    body = page.get(url).content.decode()
    assert "$0.25 per successful run" in body
    assert "$0.10" not in body


def test_a_per_run_purchase_upgraded_to_a_one_time_version_still_shows_its_per_run_price(
    world: World,
    fake_stripe: FakeStripe,
    publisher: Publisher,
    categories: dict[str, Category],
    django_assert_num_queries: Any,
) -> None:
    listing = _listing(publisher, categories, "per_run")
    _buy(world, listing, Purchase.Pricing.PER_RUN, 25)
    agent = _upgraded_copy(world, listing, "one_time", 1900)

    assert _notice(world, agent, django_assert_num_queries).startswith("$0.25 per successful run")


@pytest.mark.parametrize("pricing", [Purchase.Pricing.ONE_TIME, Purchase.Pricing.MONTHLY])
def test_a_one_time_or_monthly_purchase_upgraded_to_a_per_run_version_shows_no_per_run_price(
    world: World,
    fake_stripe: FakeStripe,
    publisher: Publisher,
    categories: dict[str, Category],
    django_assert_num_queries: Any,
    pricing: str,
) -> None:
    listing = _listing(publisher, categories, pricing)
    _buy(world, listing, pricing, 1900)
    agent = _upgraded_copy(world, listing, "per_run", 10)

    assert _notice(world, agent, django_assert_num_queries) == ""


def test_no_runnable_purchase_shows_no_price_and_billing_off_says_nothing_is_charged(
    world: World,
    publisher: Publisher,
    categories: dict[str, Category],
    django_assert_num_queries: Any,
) -> None:
    listing = _listing(publisher, categories, "per_run")
    agent = _upgraded_copy(world, listing, "per_run", 10)

    # billing off (no Stripe key): the "not charged yet" notice, from the copy's listing
    assert "Billing is not active yet" in _notice(world, agent, django_assert_num_queries)


def test_an_ended_purchase_shows_no_per_run_price(
    world: World,
    fake_stripe: FakeStripe,
    publisher: Publisher,
    categories: dict[str, Category],
    django_assert_num_queries: Any,
) -> None:
    listing = _listing(publisher, categories, "per_run")
    purchase = _buy(world, listing, Purchase.Pricing.PER_RUN, 25)
    Purchase.objects.filter(pk=purchase.pk).update(status=Purchase.Status.ENDED)
    agent = _upgraded_copy(world, listing, "per_run", 10)

    assert _notice(world, agent, django_assert_num_queries) == ""
