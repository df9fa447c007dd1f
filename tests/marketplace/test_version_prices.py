"""A new version's price: sent without one (the SDK, the CLI, a script), it keeps the listing's
current price instead of making a paid listing free; "free" said explicitly makes it free; a
new listing without a price is free. The publish form starts a new version from the listing's
price, and for a published listing shows its fixed category and that category's fee. A paid
workflow template needs an onboarded publisher like an agent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django_tenants.utils import schema_context

from accounts.models import User
from agents.services import agent_create
from core.exceptions import ValidationFailed
from marketplace import fees, services
from marketplace.models import Category, CreatorAccount, FeeRule, Listing, ListingVersion
from tests.helpers.personas import World, access_of, key_client, logged_in
from workflows import services as workflow_services

pytestmark = pytest.mark.django_db

API = "/api/v1/marketplace/listings/"
PUBLISH = "/w/alpha/marketplace/publish/"
FEE = "/w/alpha/marketplace/publish/fee/"
FLOW: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"name": {"type": "string", "required": True}},
    "steps": [{"id": "greet", "type": "transform", "config": {"value": "Hi {{ input.name }}"}}],
    "edges": [],
    "output": {"text": "{{ steps.greet }}"},
}


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


def _onboard(world: World) -> CreatorAccount:
    publisher = services.publisher_get_or_create(access=access_of(world.owner, world.workspace_a))
    return CreatorAccount.objects.create(
        publisher=publisher,
        stripe_account_id="acct_alphaonboarded",
        details_submitted=True,
        transfers_active=True,
        payouts_enabled=True,
    )


def _body(agent_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "agent",
        "source_id": agent_id,
        "title": "Invoice reader",
        "summary": "Reads invoices.",
        "category": "finance",
        **fields,
    }


def _approve(staff: User, number: int) -> Listing:
    services.version_approve(user=staff, version=ListingVersion.objects.get(number=number))
    return Listing.objects.get()


def _price(obj: Listing | ListingVersion) -> tuple[str, int, str]:
    return (obj.pricing, obj.price_cents, obj.currency)


def test_a_new_version_sent_without_a_price_keeps_the_listings_price(
    world: World, agent_id: int, staff: User
) -> None:
    _onboard(world)
    api = key_client(world, ["workspace.view", "build"])
    # a new listing without a price is free
    first = api.post(API, _body(agent_id), format="json")
    assert first.status_code == 201, first.content
    assert (first.json()["pricing"], first.json()["price_cents"]) == ("free", 0)
    # v2 sets a monthly price
    assert (
        api.post(
            API, _body(agent_id, pricing="monthly", price_cents=900), format="json"
        ).status_code
        == 201
    )
    assert _price(_approve(staff, 2)) == ("monthly", 900, "usd")

    # v3, as `agentmarket listings publish` sends it without --pricing: still monthly $9
    third = api.post(API, _body(agent_id, changelog="Faster."), format="json")
    assert third.status_code == 201, third.content
    assert (third.json()["pricing"], third.json()["price_cents"]) == ("monthly", 900)
    assert _price(_approve(staff, 3)) == ("monthly", 900, "usd")

    # only a price: the model stays; only a model between paid ones: the price stays
    assert (
        api.post(API, _body(agent_id, price_cents=1200), format="json").json()["price_cents"]
        == 1200
    )
    assert _price(ListingVersion.objects.get(number=4)) == ("monthly", 1200, "usd")
    assert _price(_approve(staff, 4)) == ("monthly", 1200, "usd")
    one_time = api.post(API, _body(agent_id, pricing="one_time"), format="json").json()
    assert (one_time["pricing"], one_time["price_cents"]) == ("one_time", 1200)

    # "free" said explicitly makes it free
    free = api.post(API, _body(agent_id, pricing="free"), format="json")
    assert (free.json()["pricing"], free.json()["price_cents"]) == ("free", 0)
    services.version_approve(user=staff, version=ListingVersion.objects.get(number=5))
    assert _price(_approve(staff, 6)) == ("free", 0, "usd")
    # and from free, a paid model needs its price
    refused = api.post(API, _body(agent_id, pricing="per_run"), format="json")
    assert refused.status_code == 400
    assert "price_cents" in refused.json()["error"]["fields"]


def test_before_any_approval_a_new_version_keeps_the_last_submitted_price(
    world: World, agent_id: int
) -> None:
    _onboard(world)
    access = access_of(world.owner, world.workspace_a)
    arguments: dict[str, Any] = {
        "access": access,
        "kind": "agent",
        "source_id": agent_id,
        "title": "Invoice reader",
        "summary": "Reads invoices.",
        "category_slug": "finance",
    }
    services.listing_publish(**arguments, pricing="one_time", price_cents=1900)
    second = services.listing_publish(**arguments, changelog="Typo fixed.")
    assert _price(second) == ("one_time", 1900, "usd")


def test_a_kept_paid_price_still_needs_payouts(world: World, agent_id: int, staff: User) -> None:
    account = _onboard(world)
    api = key_client(world, ["workspace.view", "build"])
    api.post(API, _body(agent_id, pricing="one_time", price_cents=1900), format="json")
    _approve(staff, 1)
    CreatorAccount.objects.filter(pk=account.pk).update(payouts_enabled=False)

    refused = api.post(API, _body(agent_id), format="json")

    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {"pricing": [services.PAYOUTS_FIRST]}
    assert api.post(API, _body(agent_id, pricing="free"), format="json").status_code == 201


def test_the_api_checks_the_price_fields(world: World, agent_id: int) -> None:
    _onboard(world)
    api = key_client(world, ["workspace.view", "build"])
    for value in ["abc", -5, 10**15, 19.5]:
        answer = api.post(
            API, _body(agent_id, pricing="one_time", price_cents=value), format="json"
        )
        assert answer.status_code == 400, value
        assert list(answer.json()["error"]["fields"]) == ["price_cents"], value
    bad_currency = api.post(API, _body(agent_id, currency="eur"), format="json")
    assert list(bad_currency.json()["error"]["fields"]) == ["currency"]
    assert not ListingVersion.objects.exists()


def test_the_publish_form_starts_a_new_version_from_the_listings_price(
    world: World, agent_id: int, staff: User
) -> None:
    _onboard(world)
    FeeRule.objects.create(category=None, percent=Decimal("20"))
    FeeRule.objects.create(category=Category.objects.get(slug="finance"), percent=Decimal("12.5"))
    access = access_of(world.owner, world.workspace_a)
    services.listing_publish(
        access=access,
        kind="agent",
        source_id=agent_id,
        title="Invoice reader",
        summary="Reads invoices.",
        category_slug="support",
        pricing="one_time",
        price_cents=1900,
    )
    listing = _approve(staff, 1)
    alpha = logged_in(world.owner)

    # the workspace page offers a new version of each published listing
    page = alpha.get("/w/alpha/marketplace/").content.decode()
    assert f'href="{PUBLISH}?source=agent:{agent_id}">New version</a>' in page

    form = alpha.get(PUBLISH, {"source": f"agent:{agent_id}"}).content.decode()
    assert '<option value="one_time" selected>' in form
    assert 'name="price" value="19.00"' in form
    assert f'<option value="agent:{agent_id}" selected>' in form
    assert "This submits a new version of <strong>Invoice reader</strong>" in form
    # the category is the listing's, read-only, and the fee shown is that category's
    assert '<select name="category" required disabled' in form
    assert '<option value="support" selected>Support</option>' in form
    assert "A published listing keeps its category" in form
    assert "Platform fee: 20%" in form  # support: the default, not finance's 12.5 %
    assert "At $19.00 per sale: the platform keeps <strong>$3.80</strong>" in form

    # typing another category in does not change the fee preview (htmx asks with the source)
    preview = alpha.get(
        FEE,
        {
            "source": f"agent:{agent_id}",
            "category": "finance",
            "pricing": "one_time",
            "price": "19",
        },
    ).content.decode()
    assert "Platform fee: 20%" in preview
    assert "(the listing's category, which stays)" in preview
    assert fees.fee_percent(listing) == Decimal("20.00")
    # without a published listing behind the source, the typed category decides
    assert "Platform fee: 12.5%" in alpha.get(FEE, {"category": "finance"}).content.decode()

    # submitted as it came: the price is kept, the category too (the posted one is ignored)
    submitted = alpha.post(
        PUBLISH,
        {
            "source": f"agent:{agent_id}",
            "title": "Invoice reader",
            "summary": "Reads invoices.",
            "category": "finance",
            "pricing": "one_time",
            "price": "19.00",
            "currency": "usd",
        },
    )
    assert submitted.status_code == 302, submitted.content.decode()
    assert _price(ListingVersion.objects.get(number=2)) == ("one_time", 1900, "usd")
    listing = _approve(staff, 2)
    assert listing.category.slug == "support"


def test_the_publish_form_of_a_new_source_is_free_and_its_category_editable(
    world: World, agent_id: int
) -> None:
    form = logged_in(world.owner).get(PUBLISH).content.decode()
    assert '<option value="free" selected>' in form
    assert '<select name="category" required disabled' not in form
    assert "This submits a new version" not in form


def test_a_paid_workflow_template_needs_an_onboarded_publisher(world: World, staff: User) -> None:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        workflow = workflow_services.workflow_create(access=access, name="Greeter", definition=FLOW)
    arguments: dict[str, Any] = {
        "access": access,
        "kind": "workflow",
        "source_id": workflow.pk,
        "title": "Greeter",
        "summary": "Greets.",
        "category_slug": "support",
        "pricing": "one_time",
        "price_cents": 1900,
    }
    with pytest.raises(ValidationFailed) as refused:
        services.listing_publish(**arguments)
    assert refused.value.fields == {"pricing": [services.PAYOUTS_FIRST]}
    assert not ListingVersion.objects.exists()

    _onboard(world)
    version = services.listing_publish(**arguments)
    services.version_approve(user=staff, version=version)
    listing = Listing.objects.get()
    assert listing.kind == "workflow"
    assert _price(listing) == ("one_time", 1900, "usd")
    assert version.definition["workflow"]["steps"][0]["id"] == "greet"


def test_a_form_posted_without_a_price_model_keeps_the_price_too(
    world: World, agent_id: int, staff: User
) -> None:
    _onboard(world)
    alpha = logged_in(world.owner)
    form = {
        "source": f"agent:{agent_id}",
        "title": "Invoice reader",
        "summary": "Reads invoices.",
        "category": "finance",
    }
    assert alpha.post(PUBLISH, {**form, "pricing": "monthly", "price": "9"}).status_code == 302
    _approve(staff, 1)
    # an older page or a script that sends no price fields
    assert alpha.post(PUBLISH, form).status_code == 302
    assert _price(ListingVersion.objects.get(number=2)) == ("monthly", 900, "usd")
    # Free chosen on the form makes it free
    assert alpha.post(PUBLISH, {**form, "pricing": "free"}).status_code == 302
    assert _price(ListingVersion.objects.get(number=3)) == ("free", 0, "usd")
