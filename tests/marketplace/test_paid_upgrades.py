"""Upgrading by hand onto a paid version: refused (402, naming where to buy) while the workspace
has no runnable purchase, so a free install is never moved onto a version it cannot run; the
workspace page says so on the button (price, "buy it first", a link to the listing) and shows
no diff of what is sold. With a purchase, the upgrade goes through. And the public versions
endpoint gives a paid version's definition only to the publisher's own workspace."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from accounts.models import User
from agents.services import agent_create, agent_update
from marketplace import services
from marketplace.models import Category, CreatorAccount, Install, Listing, Purchase
from marketplace.pricing import PurchaseRequired
from tests.fakes import FakeStripe
from tests.helpers.personas import World, access_of, key_client, logged_in

pytestmark = pytest.mark.django_db

PROMPT = "SECRET-PROMPT-42: read invoices."


@pytest.fixture
def staff(world: World) -> User:
    Category.objects.create(slug="finance", name="Finance")
    return User.objects.create_superuser(email="mod@platform.test", password="x")


def _publish(world: World, staff: User, agent_id: int, **price: Any) -> Listing:
    access = access_of(world.owner, world.workspace_a)
    version = services.listing_publish(
        access=access,
        kind="agent",
        source_id=agent_id,
        title="Invoice reader",
        summary="Reads invoices.",
        category_slug="finance",
        **price,
    )
    services.version_approve(user=staff, version=version)
    return Listing.objects.get(pk=version.listing_id)


@pytest.fixture
def free_then_paid(world: World, staff: User, fake_stripe: FakeStripe) -> Install:
    """Bravo installed version 1 (free); version 2 is $19.00 one-time."""
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="Invoice reader",
            model="offline:demo",
            system_prompt=PROMPT,
        )
    listing = _publish(world, staff, agent.pk)
    install = services.install(access=access_of(world.outsider, world.workspace_b), listing=listing)
    CreatorAccount.objects.create(
        publisher=listing.publisher,
        stripe_account_id="acct_alphaonboarded",
        details_submitted=True,
        transfers_active=True,
        payouts_enabled=True,
    )
    with schema_context(world.workspace_a.schema_name):
        agent_update(
            access=access_of(world.owner, world.workspace_a),
            agent_id=agent.pk,
            system_prompt=PROMPT + " Version 2.",
        )
    _publish(world, staff, agent.pk, pricing="one_time", price_cents=1900)
    return install


def _buy(install: Install) -> Purchase:
    listing = Listing.objects.select_related("current_version").get(pk=install.listing_id)
    assert listing.current_version is not None
    return Purchase.objects.create(
        buyer_id=install.workspace_id,
        listing=listing,
        version=listing.current_version,
        publisher_id=listing.publisher_id,
        pricing="one_time",
        unit_amount_cents=1900,
        fee_percent=Decimal(20),
        status=Purchase.Status.ACTIVE,
    )


def test_a_manual_upgrade_onto_a_paid_version_needs_a_purchase(
    world: World, free_then_paid: Install
) -> None:
    bravo = access_of(world.outsider, world.workspace_b)
    slug = free_then_paid.listing.slug

    with pytest.raises(PurchaseRequired) as refused:
        services.upgrade(access=bravo, install=free_then_paid)

    assert refused.value.status == 402
    assert refused.value.message == (
        "Version 2 of “Invoice reader” is paid ($19.00 one-time): an owner or admin buys it "
        f"first on /marketplace/l/{slug}/, then upgrades; this install stays on version 1."
    )
    free_then_paid.refresh_from_db()
    assert free_then_paid.version.number == 1

    # the API says the same, with the code
    api = key_client(world, ["workspace.view", "build"], workspace=world.workspace_b)
    answer = api.post(f"/api/v1/marketplace/installs/{free_then_paid.pk}/upgrade/")
    assert answer.status_code == 402
    assert answer.json()["error"]["code"] == "purchase_required"

    # bought: the upgrade goes through
    _buy(free_then_paid)
    upgraded = services.upgrade(access=bravo, install=free_then_paid)
    assert upgraded.version.number == 2


def test_the_upgrade_button_names_the_price_and_sends_to_the_listing(
    world: World, free_then_paid: Install
) -> None:
    bravo = logged_in(world.outsider)
    slug = free_then_paid.listing.slug

    html = bravo.get("/w/bravo/marketplace/").content.decode()

    assert (
        f'href="/marketplace/l/{slug}/" title="Version 2 is paid: buy it on the listing page, '
        'then upgrade">Upgrade to v2 · $19.00 one-time: buy it first</a>'
    ) in html
    assert f"/w/bravo/marketplace/installs/{free_then_paid.pk}/upgrade/" not in html
    # what is sold is not shown before it is bought
    assert "Version 2." not in html
    assert "What changed" not in html
    assert "buy it on the listing page to see what changed and upgrade" in html

    # the form posted anyway: the reason, and the install stays
    answer = bravo.post(f"/w/bravo/marketplace/installs/{free_then_paid.pk}/upgrade/", follow=True)
    assert "is paid ($19.00 one-time)" in answer.content.decode()
    free_then_paid.refresh_from_db()
    assert free_then_paid.version.number == 1

    _buy(free_then_paid)
    bought = bravo.get("/w/bravo/marketplace/").content.decode()
    assert f"/w/bravo/marketplace/installs/{free_then_paid.pk}/upgrade/" in bought
    assert ">Upgrade to v2</button>" in bought
    assert "What changed" in bought


def test_a_paid_versions_definition_is_only_for_its_publisher(
    world: World, free_then_paid: Install
) -> None:
    url = f"/api/v1/marketplace/listings/{free_then_paid.listing.slug}/versions/"

    def versions(client: Client | APIClient) -> dict[int, Any]:
        answer = client.get(url)
        assert answer.status_code == 200
        return {v["number"]: v for v in answer.json()["results"]}

    anonymous = versions(APIClient())
    assert anonymous[2]["pricing"] == "one_time"
    assert anonymous[2]["definition"] is None
    # the free version is unchanged: its definition is public
    assert anonymous[1]["definition"]["agent"]["system_prompt"] == PROMPT
    # another workspace's key (even one that installed it) or a signed-in stranger: null
    bravo_key = key_client(world, ["workspace.view"], workspace=world.workspace_b)
    assert versions(bravo_key)[2]["definition"] is None
    assert versions(logged_in(world.outsider))[2]["definition"] is None
    # the publisher's own key sees its definition
    alpha_key = key_client(world, ["workspace.view"])
    assert versions(alpha_key)[2]["definition"]["agent"]["system_prompt"] == PROMPT + " Version 2."
    # the public listing endpoint never carries definitions
    detail = APIClient().get(f"/api/v1/marketplace/listings/{free_then_paid.listing.slug}/")
    assert "SECRET-PROMPT" not in detail.content.decode()
    page = Client().get(f"/marketplace/l/{free_then_paid.listing.slug}/")
    assert "SECRET-PROMPT" not in page.content.decode()
    assert "Version 2." not in APIClient().get(url).content.decode()
