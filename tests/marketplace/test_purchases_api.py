"""The purchases API (the buyer's): list the workspace's own purchases, start one (the Checkout
URL), cancel a monthly one; in the OpenAPI schema. Another workspace's purchases are never
visible, a viewer cannot buy, billing off is a clear 409."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from accounts.models import User
from agents.services import agent_create
from marketplace import services
from marketplace.models import Category, CreatorAccount, Listing, Purchase
from tenants.models import Membership, Role
from tests.fakes import FakeStripe
from tests.helpers.personas import World, access_of, key_client

pytestmark = pytest.mark.django_db

API = "/api/v1/marketplace/purchases/"


def _paid_listing(world: World, pricing: str = "one_time", cents: int = 1900) -> Listing:
    seller = access_of(world.owner, world.workspace_a)
    Category.objects.get_or_create(slug="support", defaults={"name": "Support"})
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(access=seller, name="Summariser", model="offline:demo")
    version = services.listing_publish(
        access=seller,
        kind="agent",
        source_id=agent.pk,
        title="Summariser",
        summary="Sums things up.",
        category_slug="support",
        tags=["Support"],
    )
    staff = User.objects.create_superuser(email="mod@platform.test", password="x")
    services.version_approve(user=staff, version=version)
    type(version).objects.filter(pk=version.pk).update(pricing=pricing, price_cents=cents)
    Listing.objects.filter(pk=version.listing_id).update(pricing=pricing, price_cents=cents)
    listing = Listing.objects.get(pk=version.listing_id)
    CreatorAccount.objects.create(
        publisher=listing.publisher,
        stripe_account_id="acct_creator",
        details_submitted=True,
        transfers_active=True,
        payouts_enabled=True,
    )
    return listing


def _session(user: User, workspace_slug: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    client.credentials(HTTP_X_WORKSPACE=workspace_slug)
    return client


def test_start_answers_the_checkout_url_and_the_list_shows_only_the_workspaces_own(
    world: World, fake_stripe: FakeStripe
) -> None:
    listing = _paid_listing(world)
    bravo = _session(world.outsider, world.workspace_b.slug)

    answer = bravo.post(API, {"listing": listing.slug}, format="json")

    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["checkout_url"].startswith(f"{fake_stripe.base_url}/test/checkout/")
    assert body["purchase"]["status"] == "pending"
    assert body["purchase"]["unit_amount_cents"] == 1900
    assert body["purchase"]["runnable"] is False
    (request,) = [r for r in fake_stripe.requests if r.path == "/v1/checkout/sessions"]
    assert request.body["success_url"].endswith(f"/marketplace/l/{listing.slug}/")

    listed = bravo.get(API).json()
    assert [p["listing"] for p in listed["results"]] == [listing.slug]
    # alpha (the seller) and an API key of alpha see none of bravo's purchases
    assert _session(world.owner, world.workspace_a.slug).get(API).json()["results"] == []
    assert key_client(world, ["workspace.view"]).get(API).json()["results"] == []
    # an outsider naming bravo gets a 404, not its purchases
    assert _session(world.owner, world.workspace_b.slug).get(API).status_code == 404


def test_viewers_and_api_keys_cannot_buy_and_billing_off_is_explained(
    world: World, fake_stripe: FakeStripe, settings: Any
) -> None:
    listing = _paid_listing(world)
    viewer = User.objects.create_user(email="viewer@bravo.test", password="x")
    Membership.objects.create(user=viewer, workspace=world.workspace_b, role=Role.VIEWER)

    refused = _session(viewer, world.workspace_b.slug).post(
        API, {"listing": listing.slug}, format="json"
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    keyed = key_client(world, ["workspace.view", "build", "run"], workspace=world.workspace_b)
    assert keyed.post(API, {"listing": listing.slug}, format="json").status_code == 403
    # a viewer may read the workspace's purchases (none yet)
    assert _session(viewer, world.workspace_b.slug).get(API).json()["results"] == []

    settings.STRIPE_TEST_SECRET_KEY = ""
    off = _session(world.outsider, world.workspace_b.slug).post(
        API, {"listing": listing.slug}, format="json"
    )
    assert off.status_code == 409
    assert "Billing is off" in off.json()["error"]["message"]
    assert "STRIPE_TEST_SECRET_KEY" in off.json()["error"]["message"]
    assert not Purchase.objects.exists()


def test_only_monthly_purchases_cancel_and_only_the_buyers(
    world: World, fake_stripe: FakeStripe
) -> None:
    listing = _paid_listing(world)
    assert listing.current_version is not None
    purchase = Purchase.objects.create(
        buyer=world.workspace_b,
        listing=listing,
        version=listing.current_version,
        publisher=listing.publisher,
        pricing="one_time",
        unit_amount_cents=1900,
        fee_percent=Decimal(20),
        status=Purchase.Status.ACTIVE,
    )
    url = f"{API}{purchase.pk}/cancel/"

    other = _session(world.owner, world.workspace_a.slug).post(url)
    assert other.status_code == 404
    one_time = _session(world.outsider, world.workspace_b.slug).post(url)
    assert one_time.status_code == 409
    assert "Only monthly purchases" in one_time.json()["error"]["message"]


def test_the_purchase_endpoints_are_in_the_openapi_schema(world: World) -> None:
    schema = APIClient().get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/marketplace/purchases/"])
    assert "post" in paths["/api/v1/marketplace/purchases/{purchase_id}/cancel/"]
