"""The buying pages: a paid listing offers owners and admins the button for its pricing with
its terms (members are told who can buy), the button goes to Stripe Checkout, the workspace's
marketplace page lists purchases with their status, and only owners and admins cancel. While
billing is off the old notice stays and nothing is sold."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from marketplace.models import Category, CreatorAccount, Listing, Publisher, Purchase
from tenants.models import Membership, Role
from tests.fakes import FakeStripe
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid(publisher: Publisher, categories: dict[str, Category]) -> Listing:
    listing = make_listing(
        publisher=publisher,
        category=categories["support"],
        title="Summariser",
        pricing="one_time",
        price_cents=1900,
        index=False,
    )
    assert listing.current_version is not None
    type(listing.current_version).objects.filter(pk=listing.current_version.pk).update(
        pricing="one_time", price_cents=1900
    )
    CreatorAccount.objects.create(
        publisher=publisher,
        stripe_account_id="acct_creator",
        details_submitted=True,
        transfers_active=True,
        payouts_enabled=True,
    )
    return listing


def _as(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _member_of_b(role: str) -> User:
    user = User.objects.create_user(email=f"{role}@bravo.test", password="x")
    return user


def test_owners_buy_through_checkout_and_members_are_told_who_can(
    world: World, fake_stripe: FakeStripe, paid: Listing
) -> None:
    url = reverse("marketplace_listing", kwargs={"slug": paid.slug})
    page = _as(world.outsider).get(url).content.decode()
    # one workspace can buy it: the button names it
    assert (
        f'Buy and install for <span class="mk-install__name" title="{world.workspace_b.name}">'
        f"{world.workspace_b.name}</span> · $19.00 one-time"
    ) in page
    assert "hx-trigger" not in page.split('id="listing-actions"')[1].split(">")[0]
    assert "Billing is not active yet" not in page

    member = _member_of_b("member")
    Membership.objects.create(user=member, workspace=world.workspace_b, role=Role.MEMBER)
    as_member = _as(member).get(url).content.decode()
    assert "Buy and install" not in as_member
    assert "Only a workspace's owners and admins can buy this listing." in as_member

    bought = _as(world.outsider).post(
        reverse("marketplace_buy", kwargs={"slug": paid.slug}),
        {"workspace": world.workspace_b.slug},
    )
    assert bought.status_code == 302
    assert bought["Location"].startswith(f"{fake_stripe.base_url}/test/checkout/cs_test_")
    purchase = Purchase.objects.get(listing=paid)
    assert purchase.status == Purchase.Status.PENDING
    again = _as(world.outsider).get(url).content.decode()
    assert "Waiting for Stripe to confirm the payment for Bravo" in again
    # back from Checkout before Stripe's webhook: the buttons refresh themselves until it lands
    actions = again.split('id="listing-actions"')[1].split(">")[0]
    assert 'hx-trigger="every 3s"' in actions
    assert 'hx-select="#listing-actions"' in actions

    # a member cannot buy for bravo, even by posting the form
    refused = _as(member).post(
        reverse("marketplace_buy", kwargs={"slug": paid.slug}),
        {"workspace": world.workspace_b.slug},
    )
    assert refused.status_code == 302
    assert refused["Location"] == url


def test_the_publishers_own_workspace_is_never_offered_for_buying(
    world: World, fake_stripe: FakeStripe, paid: Listing
) -> None:
    Publisher.objects.filter(pk=paid.publisher_id).update(workspace=world.workspace_a)
    url = reverse("marketplace_listing", kwargs={"slug": paid.slug})
    page = _as(world.owner).get(url).content.decode()  # the owner of alpha, the publisher
    assert "Buy and install" not in page
    assert "Your workspace publishes this listing" in page
    Membership.objects.create(user=world.owner, workspace=world.workspace_b, role=Role.OWNER)
    page = _as(world.owner).get(url).content.decode()
    assert "Buy and install" in page
    assert f'value="{world.workspace_a.slug}"' not in page.split("mk-buy")[1].split("</form>")[0]


def test_the_workspace_page_lists_purchases_and_only_admins_cancel(
    world: World, fake_stripe: FakeStripe, paid: Listing
) -> None:
    assert paid.current_version is not None
    purchase = Purchase.objects.create(
        buyer=world.workspace_b,
        listing=paid,
        version=paid.current_version,
        publisher=paid.publisher,
        pricing="monthly",
        unit_amount_cents=900,
        fee_percent=Decimal(20),
        status=Purchase.Status.ACTIVE,
        stripe_subscription_id="sub_missing",
    )
    page_url = reverse("marketplace_workspace", kwargs={"workspace_slug": world.workspace_b.slug})
    page = _as(world.outsider).get(page_url).content.decode()
    assert "Purchases" in page
    assert "$9.00 a month" in page
    assert "Cancel subscription" in page

    viewer = _member_of_b("viewer")
    Membership.objects.create(user=viewer, workspace=world.workspace_b, role=Role.VIEWER)
    as_viewer = _as(viewer).get(page_url).content.decode()
    assert "$9.00 a month" in as_viewer
    assert "Cancel subscription" not in as_viewer
    cancel = reverse(
        "marketplace_purchase_cancel",
        kwargs={"workspace_slug": world.workspace_b.slug, "purchase_id": purchase.pk},
    )
    assert _as(viewer).post(cancel).status_code == 403
    # another workspace's owner cannot reach bravo's purchase
    assert _as(world.owner).post(cancel).status_code == 404
    assert Purchase.objects.get(pk=purchase.pk).status == Purchase.Status.ACTIVE


def test_with_billing_off_the_listing_still_says_it_is_not_charged(
    world: World, paid: Listing, settings: Any
) -> None:
    settings.STRIPE_TEST_SECRET_KEY = ""
    url = reverse("marketplace_listing", kwargs={"slug": paid.slug})
    page = _as(world.outsider).get(url).content.decode()
    assert "Billing is not active yet" in page
    assert "Buy and install" not in page
    assert ">Install" in page


def test_a_listing_whose_publisher_cannot_be_paid_says_so_instead_of_buy(
    world: World,
    fake_stripe: FakeStripe,
    paid: Listing,
    django_assert_max_num_queries: Any,
) -> None:
    url = reverse("marketplace_listing", kwargs={"slug": paid.slug})
    outsider = _as(world.outsider)
    outsider.get(url)  # warm the caches
    with django_assert_max_num_queries(40) as onboarded:
        assert "Buy and install" in outsider.get(url).content.decode()
    # Stripe restricted the publisher's account since (account.updated)
    CreatorAccount.objects.filter(publisher=paid.publisher).update(
        transfers_active=False, payouts_enabled=False, disabled_reason="requirements.past_due"
    )
    with django_assert_max_num_queries(len(onboarded.captured_queries)):
        page = outsider.get(url).content.decode()
    assert "Not available to buy right now: the publisher&#x27;s payouts are not set up." in page
    assert "Buy and install" not in page
    assert "mk-buy" not in page
    # a member is told the same, not who could buy
    member = _member_of_b("member")
    Membership.objects.create(user=member, workspace=world.workspace_b, role=Role.MEMBER)
    as_member = _as(member).get(url).content.decode()
    assert "Not available to buy right now" in as_member
    assert "Only a workspace's owners and admins can buy this listing." not in as_member
    # posting the form anyway is refused before Stripe, nothing pending
    outsider.post(
        reverse("marketplace_buy", kwargs={"slug": paid.slug}),
        {"workspace": world.workspace_b.slug},
    )
    assert not Purchase.objects.filter(listing=paid).exists()
    # a purchase made before keeps working: bought, installable
    assert paid.current_version is not None
    Purchase.objects.create(
        buyer=world.workspace_b,
        listing=paid,
        version=paid.current_version,
        publisher=paid.publisher,
        pricing=Purchase.Pricing.ONE_TIME,
        unit_amount_cents=1900,
        fee_percent=Decimal("20"),
        status=Purchase.Status.ACTIVE,
    )
    page = outsider.get(url).content.decode()
    assert "Bought for Bravo" in page
    assert "Install" in page.split("mk-install")[-1]
    # onboarded again: for sale again
    CreatorAccount.objects.filter(publisher=paid.publisher).update(
        transfers_active=True, payouts_enabled=True, disabled_reason=""
    )
    member_page = _as(member).get(url).content.decode()
    assert "Not available to buy right now" not in member_page
