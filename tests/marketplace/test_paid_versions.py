"""Prices on versions: the creator picks free / one-time / per successful run / monthly and a
price (checked beside the field), sees the platform fee and their share before submitting; a
paid version needs an onboarded payouts account (form, service and API); the version keeps its
price and the listing takes it on approval. Staff see prices and payout status in the
moderation queue and set the fee (audited). And the split rule, for every amount and percent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context
from hypothesis import given
from hypothesis import strategies as st

from accounts.models import User
from agents.services import agent_create
from core.exceptions import Conflict, ValidationFailed
from marketplace import fees, services
from marketplace.models import (
    Category,
    CreatorAccount,
    FeeRule,
    Listing,
    ListingVersion,
)
from marketplace.pricing import price_label
from tenants.models import AuditEvent
from tests.helpers.personas import World, access_of, key_client, logged_in

pytestmark = pytest.mark.django_db

PUBLISH = "marketplace_publish"


@pytest.fixture
def staff(world: World) -> User:
    Category.objects.create(slug="support", name="Support")
    Category.objects.create(slug="finance", name="Finance")
    return User.objects.create_superuser(email="mod@platform.test", password="x")


@pytest.fixture
def agent_id(world: World, staff: User) -> int:
    with schema_context(world.workspace_a.schema_name):
        return agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="Invoice reader",
            model="offline:demo",
            system_prompt="Read invoices.",
        ).pk


def _onboarded(world: World) -> CreatorAccount:
    """Alpha's payouts account as Stripe reports it once onboarding is complete."""
    publisher = services.publisher_get_or_create(access=access_of(world.owner, world.workspace_a))
    return CreatorAccount.objects.create(
        publisher=publisher,
        stripe_account_id="acct_alphaonboarded",
        details_submitted=True,
        transfers_active=True,
        payouts_enabled=True,
    )


def _form(agent_id: int, **fields: str) -> dict[str, str]:
    return {
        "source": f"agent:{agent_id}",
        "title": "Invoice reader",
        "summary": "Reads invoices.",
        "category": "finance",
        "currency": "usd",
        **fields,
    }


def _url(name: str = PUBLISH) -> str:
    return reverse(name, kwargs={"workspace_slug": "alpha"})


def test_the_price_is_checked_beside_its_field(world: World, agent_id: int) -> None:
    _onboarded(world)
    alpha = logged_in(world.owner)
    for price, error in [
        ("", "Give a price for a paid version: $0.50 ($0.05 per run) to $10,000."),
        ("0.49", "The price is at least $0.50 (Stripe&#x27;s minimum charge)."),
        ("-5", "The price is at least $0.50"),
        ("10000.01", "The price is at most $10,000.00."),
        ("1.234", "Ensure that there are no more than 2 decimal places."),
    ]:
        refused = alpha.post(_url(), _form(agent_id, pricing="one_time", price=price))
        html = refused.content.decode()
        assert refused.status_code == 400, price
        assert f'<ul class="errorlist" id="id_price_error"><li>{error}' in html, (price, html)
    wrong_currency = alpha.post(
        _url(), _form(agent_id, pricing="monthly", price="9", currency="eur")
    )
    assert wrong_currency.status_code == 400
    assert 'id="id_currency_error"' in wrong_currency.content.decode()
    per_run = alpha.post(_url(), _form(agent_id, pricing="per_run", price="0.04"))
    assert per_run.status_code == 400
    assert "A price per run is at least $0.05" in per_run.content.decode()
    assert not ListingVersion.objects.exists()
    # the limits themselves are accepted
    assert alpha.post(_url(), _form(agent_id, pricing="per_run", price="0.05")).status_code == 302
    assert alpha.post(_url(), _form(agent_id, pricing="monthly", price="10000")).status_code == 302
    assert [(v.pricing, v.price_cents) for v in ListingVersion.objects.order_by("number")] == [
        ("per_run", 5),
        ("monthly", 1_000_000),
    ]


def test_a_price_typed_before_choosing_free_is_ignored(world: World, agent_id: int) -> None:
    alpha = logged_in(world.owner)
    assert alpha.post(_url(), _form(agent_id, pricing="free", price="12")).status_code == 302
    version = ListingVersion.objects.get()
    assert (version.pricing, version.price_cents) == ("free", 0)


def test_the_fee_and_the_creators_share_are_shown_before_submitting(
    world: World, agent_id: int, staff: User
) -> None:
    FeeRule.objects.create(category=None, percent=Decimal("20"))
    FeeRule.objects.create(category=Category.objects.get(slug="finance"), percent=Decimal("12.5"))
    alpha = logged_in(world.owner)

    page = alpha.get(_url()).content.decode()
    assert "Platform fee: 20%" in page  # no category chosen yet: the default

    # as the creator picks the category and types the price (htmx asks for the fee's part)
    answer = alpha.get(
        _url("marketplace_publish_fee"),
        {"category": "finance", "pricing": "one_time", "price": "19.99"},
        headers={"HX-Request": "true"},
    )
    fee, share = fees.split(1999, Decimal("12.5"))
    assert (fee, share) == (250, 1749)  # 249.875 rounds half up
    html = answer.content.decode()
    assert "Platform fee: 12.5%" in html
    assert "in Finance" in html
    assert "At $19.99 per sale: the platform keeps <strong>$2.50</strong>" in html
    assert "you receive <strong>$17.49</strong>" in html
    monthly = alpha.get(
        _url("marketplace_publish_fee"), {"category": "support", "pricing": "monthly", "price": "9"}
    ).content.decode()
    assert "Platform fee: 20%" in monthly
    assert "At $9.00 per month: the platform keeps <strong>$1.80</strong>" in monthly
    # a page sent back with errors shows the fee of what was typed
    refused = alpha.post(_url(), _form(agent_id, title="", pricing="per_run", price="0.25"))
    assert "At $0.25 per successful run" in refused.content.decode()


def test_an_unonboarded_creator_cannot_submit_a_paid_version(
    world: World, agent_id: int, staff: User
) -> None:
    alpha = logged_in(world.owner)
    # the form: the fix is named beside the price model
    refused = alpha.post(_url(), _form(agent_id, pricing="one_time", price="19"))
    assert refused.status_code == 400
    html = refused.content.decode()
    assert '<ul class="errorlist" id="id_pricing_error"><li>Set up payouts first' in html
    # the service, whatever calls it
    access = access_of(world.owner, world.workspace_a)
    arguments: dict[str, Any] = {
        "access": access,
        "kind": "agent",
        "source_id": agent_id,
        "title": "Invoice reader",
        "summary": "Reads invoices.",
        "category_slug": "finance",
        "pricing": "monthly",
        "price_cents": 900,
    }
    with pytest.raises(ValidationFailed) as by_service:
        services.listing_publish(**arguments)
    assert by_service.value.fields == {"pricing": [services.PAYOUTS_FIRST]}
    # the API
    api = key_client(world, ["workspace.view", "build"])
    body = {
        "kind": "agent",
        "source_id": agent_id,
        "title": "Invoice reader",
        "summary": "Reads invoices.",
        "category": "finance",
        "pricing": "per_run",
        "price_cents": 250,
    }
    by_api = api.post("/api/v1/marketplace/listings/", body, format="json")
    assert by_api.status_code == 400
    assert by_api.json()["error"]["fields"] == {"pricing": [services.PAYOUTS_FIRST]}
    # a started but unfinished account is not enough
    account = _onboarded(world)
    CreatorAccount.objects.filter(pk=account.pk).update(payouts_enabled=False)
    with pytest.raises(ValidationFailed):
        services.listing_publish(**arguments)
    assert not ListingVersion.objects.exists()
    # once onboarded, all three paths accept it (the API's price is checked too)
    CreatorAccount.objects.filter(pk=account.pk).update(payouts_enabled=True)
    assert api.post(
        "/api/v1/marketplace/listings/", {**body, "price_cents": 4}, format="json"
    ).json()["error"]["fields"] == {
        "price_cents": [
            "A price per run is at least $0.05 (runs are added up on the buyer's next invoice)."
        ]
    }
    created = api.post("/api/v1/marketplace/listings/", {**body, "price_cents": 50}, format="json")
    assert created.status_code == 201, created.content
    assert (created.json()["pricing"], created.json()["price_cents"]) == ("per_run", 50)
    assert services.listing_publish(**arguments).price_cents == 900
    assert alpha.post(_url(), _form(agent_id, pricing="one_time", price="19")).status_code == 302
    assert ListingVersion.objects.count() == 3


def test_the_version_keeps_its_price_and_the_listing_follows_approval(
    world: World, agent_id: int, staff: User
) -> None:
    _onboarded(world)
    alpha = logged_in(world.owner)
    alpha.post(_url(), _form(agent_id, pricing="one_time", price="19"))
    v1 = ListingVersion.objects.get()
    listing = v1.listing
    assert (v1.pricing, v1.price_cents, v1.currency) == ("one_time", 1900, "usd")
    assert (listing.pricing, listing.price_cents) == ("free", 0)  # not for sale before approval

    services.version_approve(user=staff, version=v1)
    listing.refresh_from_db()
    assert (listing.pricing, listing.price_cents) == ("one_time", 1900)
    assert price_label(listing) == "$19.00"

    # a new price waits for its version's approval; the first version keeps what it was sold at
    alpha.post(_url(), _form(agent_id, pricing="monthly", price="9"))
    v2 = ListingVersion.objects.get(number=2)
    listing.refresh_from_db()
    assert (listing.pricing, listing.price_cents) == ("one_time", 1900)
    services.version_approve(user=staff, version=v2)
    listing.refresh_from_db()
    v1.refresh_from_db()
    assert (listing.pricing, listing.price_cents) == ("monthly", 900)
    assert price_label(listing) == "$9.00 / month"
    assert (v1.pricing, v1.price_cents) == ("one_time", 1900)
    # and back to free
    alpha.post(_url(), _form(agent_id, pricing="free"))
    services.version_approve(user=staff, version=ListingVersion.objects.get(number=3))
    listing.refresh_from_db()
    assert (listing.pricing, listing.price_cents, price_label(listing)) == ("free", 0, "Free")


def test_staff_see_price_and_payouts_status_in_the_moderation_queue(
    world: World, agent_id: int, staff: User
) -> None:
    account = _onboarded(world)
    alpha = logged_in(world.owner)
    alpha.post(_url(), _form(agent_id, pricing="per_run", price="0.50"))
    admin = logged_in(staff)
    queue = admin.get("/admin/marketplace/listingversion/?status__exact=pending").content.decode()
    assert "$0.50 per run" in queue
    assert "Onboarded" in queue
    # Stripe then asks the creator for more: staff see what, in plain words
    CreatorAccount.objects.filter(pk=account.pk).update(
        payouts_enabled=False, requirements_due=["individual.dob.day", "external_account"]
    )
    version = ListingVersion.objects.get()
    page = admin.get(f"/admin/marketplace/listingversion/{version.pk}/change/").content.decode()
    assert "Requirements due: your date of birth; a bank account to receive payouts" in page
    # the payouts account itself, read-only, with a link to it on Stripe's dashboard
    detail = admin.get(f"/admin/marketplace/creatoraccount/{account.pk}/change/")
    html = detail.content.decode()
    assert "https://dashboard.stripe.com/test/connect/accounts/acct_alphaonboarded" in html
    assert "<li>your date of birth</li>" in html
    assert "Transfers active" in html  # Stripe's capability our transfers need
    listed = admin.get("/admin/marketplace/creatoraccount/?transfers_active__exact=1")
    assert "acct_alphaonboarded" in listed.content.decode()
    assert 'name="_save"' not in html


def test_staff_set_the_fee_in_the_admin_and_it_is_audited(world: World, staff: User) -> None:
    admin = logged_in(staff)
    add = "/admin/marketplace/feerule/add/"
    refused = admin.post(add, {"category": "", "percent": "150"})
    assert refused.status_code == 200
    assert "Ensure this value is less than or equal to 100." in refused.content.decode()
    assert admin.post(add, {"category": "", "percent": "15"}).status_code == 302
    twice = admin.post(add, {"category": "", "percent": "10"})
    assert "There is already a default fee rule: change that one" in twice.content.decode()
    finance = Category.objects.get(slug="finance")
    assert admin.post(add, {"category": finance.pk, "percent": "7.5"}).status_code == 302
    listing = Listing(category=finance)
    assert fees.fee_percent(listing) == Decimal("7.5")
    assert fees.fee_percent(Listing(category=Category.objects.get(slug="support"))) == 15

    default = FeeRule.objects.get(category=None)
    change = f"/admin/marketplace/feerule/{default.pk}/change/"
    assert admin.post(change, {"category": "", "percent": "18"}).status_code == 302
    events = list(
        AuditEvent.objects.filter(action="marketplace.fee_rule_changed").order_by("created_at")
    )
    assert [
        (e.metadata["category"], e.metadata["percent"], e.metadata["previous"]) for e in events
    ] == [
        (None, "15.00", None),
        ("finance", "7.50", None),
        (None, "18.00", "15.00"),
    ]
    assert {e.actor_id for e in events} == {staff.pk}
    admin.post(f"/admin/marketplace/feerule/{default.pk}/delete/", {"post": "yes"})
    assert not FeeRule.objects.filter(category=None).exists()
    assert AuditEvent.objects.filter(
        action="marketplace.fee_rule_changed", metadata__previous="18.00", metadata__percent=None
    ).exists()


def test_outsiders_and_viewers_get_no_fee_preview(world: World, staff: User) -> None:
    assert logged_in(world.outsider).get(_url("marketplace_publish_fee")).status_code == 404
    assert Client().get(_url("marketplace_publish_fee")).status_code == 302  # to sign in


def test_publisher_price_labels() -> None:
    for pricing, cents, label in [
        ("free", 0, "Free"),
        ("one_time", 1900, "$19.00"),
        ("per_run", 25, "$0.25 per run"),
        ("monthly", 900, "$9.00 / month"),
        ("monthly", 1_000_000, "$10,000.00 / month"),
    ]:
        assert price_label(ListingVersion(pricing=pricing, price_cents=cents)) == label
        assert price_label(Listing(pricing=pricing, price_cents=cents)) == label


@given(
    amount=st.integers(min_value=0, max_value=10**7),
    hundredths=st.integers(min_value=0, max_value=10_000),
)
def test_the_split_is_exact_to_the_cent(amount: int, hundredths: int) -> None:
    percent = Decimal(hundredths) / 100
    fee, share = fees.split(amount, percent)
    assert fee + share == amount
    assert fee >= 0
    assert share >= 0
    # the fee is amount × percent rounded half up, computed here in integers:
    # amount × hundredths / 10000, half up = floor((2 × amount × hundredths + 10000) / 20000)
    assert fee == (2 * amount * hundredths + 10_000) // 20_000


def test_the_split_edges() -> None:
    assert fees.split(0, Decimal("20")) == (0, 0)
    assert fees.split(1, Decimal("50")) == (1, 0)  # half a cent rounds up, to the platform
    assert fees.split(1, Decimal("49.99")) == (0, 1)
    assert fees.split(10**7, Decimal("100")) == (10**7, 0)
    assert fees.split(10**7, Decimal("0")) == (0, 10**7)
    for bad_amount, bad_percent in [(-1, Decimal(20)), (100, Decimal("100.01")), (1, Decimal(-1))]:
        with pytest.raises(ValueError, match=r"negative|between"):
            fees.split(bad_amount, bad_percent)


def test_a_paid_version_is_not_approved_while_its_publisher_cannot_be_paid(
    world: World, agent_id: int, staff: User
) -> None:
    account = _onboarded(world)
    alpha = logged_in(world.owner)
    alpha.post(_url(), _form(agent_id, pricing="one_time", price="19"))
    alpha.post(_url(), _form(agent_id, pricing="one_time", price="25"))
    v1, v2 = ListingVersion.objects.order_by("number")
    # submitted while onboarded; then Stripe restricts the account (transfers stop)
    CreatorAccount.objects.filter(pk=account.pk).update(
        transfers_active=False,
        payouts_enabled=False,
        requirements_due=["individual.verification.document"],
        disabled_reason="requirements.past_due",
    )
    with pytest.raises(Conflict, match="not finished payouts setup") as refused:
        services.version_approve(user=staff, version=v1)
    assert "Alpha Inc" in refused.value.message
    v1.refresh_from_db()
    assert v1.status == ListingVersion.Status.PENDING
    assert v1.listing.current_version is None

    # the moderation queue says why, for each version (the bulk action and the form)
    admin = logged_in(staff)
    queue = "/admin/marketplace/listingversion/"
    done = admin.post(
        queue + "?status__exact=pending",
        {"action": "approve", "_selected_action": [str(v1.pk), str(v2.pk)]},
        follow=True,
    )
    html = done.content.decode()
    assert html.count("is paid, but its publisher Alpha Inc has not finished payouts") == 2
    assert "Approved 0 version(s)." in html
    assert "transfers capability not active" in html  # the queue's payouts column
    form = admin.post(f"{queue}{v1.pk}/change/", {"decision": "approve", "reason": ""}, follow=True)
    assert "has not finished payouts setup" in form.content.decode()
    assert ListingVersion.objects.filter(status=ListingVersion.Status.PENDING).count() == 2

    # a restriction Stripe decided, and no account at all, are named too
    CreatorAccount.objects.filter(pk=account.pk).update(disabled_reason="rejected.fraud")
    with pytest.raises(Conflict, match=r"Stripe restricted \(rejected.fraud\)"):
        services.version_approve(user=staff, version=v1)
    CreatorAccount.objects.filter(pk=account.pk).delete()
    with pytest.raises(Conflict, match="has not set up payouts"):
        services.version_approve(user=staff, version=v1)

    # a free version needs no payouts
    alpha.post(_url(), _form(agent_id, pricing="free"))
    free = ListingVersion.objects.get(number=3)
    assert services.version_approve(user=staff, version=free).status == "approved"
    # onboarded again: the paid one is approved
    _onboarded(world)
    assert services.version_approve(user=staff, version=v2).status == "approved"
