"""Marketplace actions in the browser without JavaScript: install from a listing page, see an
update and upgrade or stay pinned, uninstall, review after a run, flag, publish, reply — and
what another workspace's member or an anonymous visitor may not do."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from accounts.models import User
from agents.models import Agent
from agents.services import agent_create, agent_update
from core.exceptions import ValidationFailed
from marketplace import services
from marketplace.icons import ICON_ERROR
from marketplace.models import Category, Flag, Install, Listing, ListingVersion, Review
from tenants.models import Membership, Role, Workspace
from tests.helpers.personas import World, access_of, logged_in
from workflows.services import workflow_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(world: World) -> User:
    Category.objects.create(slug="support", name="Support")
    return User.objects.create_superuser(email="mod@platform.test", password="x")


@pytest.fixture
def listing(world: World, staff: User) -> Listing:
    """An agent of alpha, published and approved."""
    with schema_context(world.workspace_a.schema_name):
        agent_id = agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="Greeter",
            model="offline:demo",
            system_prompt="Say hello.",
        ).pk
    version = services.listing_publish(
        access=access_of(world.owner, world.workspace_a),
        kind="agent",
        source_id=agent_id,
        title="Friendly greeter",
        summary="Greets people.",
        category_slug="support",
    )
    services.version_approve(user=staff, version=version)
    return Listing.objects.get(pk=version.listing_id)


def _url(name: str, **kwargs: object) -> str:
    return reverse(name, kwargs=kwargs)


def test_install_from_the_listing_page_then_upgrade_when_a_new_version_is_approved(
    world: World, listing: Listing, staff: User
) -> None:
    bravo = logged_in(world.outsider)
    page = bravo.get(_url("marketplace_listing", slug=listing.slug)).content.decode()
    assert 'Install in <span class="mk-install__name" title="Bravo Ltd">Bravo Ltd</span>' in page
    response = bravo.post(_url("marketplace_install", slug=listing.slug), {"workspace": "bravo"})
    assert response.status_code == 302
    install = Install.objects.get(workspace=world.workspace_b)
    assert (
        "Installed in Bravo Ltd"
        in bravo.get(_url("marketplace_listing", slug=listing.slug)).content.decode()
    )

    # alpha publishes version 2, staff approve it: bravo's copy stays pinned until it upgrades
    with schema_context(world.workspace_a.schema_name):
        agent = Agent.objects.get(name="Greeter")
        agent_update(
            access=access_of(world.owner, world.workspace_a),
            agent_id=agent.pk,
            system_prompt="Say hello warmly.",
        )
    v2 = services.listing_publish(
        access=access_of(world.owner, world.workspace_a),
        kind="agent",
        source_id=agent.pk,
        title="Friendly greeter",
        summary="Greets people.",
        category_slug="support",
        changelog="Warmer greetings.",
    )
    services.version_approve(user=staff, version=v2)
    mine = bravo.get(_url("marketplace_workspace", workspace_slug="bravo")).content.decode()
    assert "Update available" in mine
    assert "Warmer greetings." in mine
    assert "Say hello warmly." in mine  # the diff of the definitions
    with schema_context(world.workspace_b.schema_name):
        copy = Agent.objects.select_related("current_version").get(pk=install.object_id)
        assert copy.current_version is not None
        assert copy.current_version.system_prompt == "Say hello."  # pinned
    bravo.post(_url("marketplace_upgrade", workspace_slug="bravo", install_id=install.pk))
    with schema_context(world.workspace_b.schema_name):
        copy = Agent.objects.select_related("current_version").get(pk=install.object_id)
        assert copy.current_version is not None
        assert copy.current_version.system_prompt == "Say hello warmly."
    assert Install.objects.get(pk=install.pk).version_id == v2.pk

    bravo.post(_url("marketplace_uninstall", workspace_slug="bravo", install_id=install.pk))
    assert Install.objects.get(pk=install.pk).uninstalled_at is not None
    with schema_context(world.workspace_b.schema_name):
        assert Agent.objects.get(pk=install.object_id).archived_at is not None


def test_review_needs_a_completed_run_and_errors_are_shown_beside_the_field(
    world: World, listing: Listing
) -> None:
    bravo = logged_in(world.outsider)
    bravo.post(_url("marketplace_install", slug=listing.slug), {"workspace": "bravo"})
    url = _url("marketplace_review", slug=listing.slug)
    refused = bravo.post(url, {"workspace": "bravo", "rating": "5", "text": "Great"})
    assert refused.status_code == 400
    assert not Review.objects.exists()
    assert "run" in refused.content.decode().lower()
    services.record_run(
        listing_version_id=listing.current_version_id or 0,
        succeeded=True,
        latency_ms=120,
        cost_usd=Decimal("0"),
        workspace=world.workspace_b,
    )
    bad = bravo.post(url, {"workspace": "bravo", "rating": "9"})
    assert bad.status_code == 400
    assert "Select a valid choice" in bad.content.decode()
    ok = bravo.post(url, {"workspace": "bravo", "rating": "5", "text": "Great"})
    assert ok.status_code == 302
    assert Review.objects.get().rating == 5
    # the listing page now offers to edit that review, filled in
    page = bravo.get(_url("marketplace_listing", slug=listing.slug)).content.decode()
    assert "Edit your review" in page
    assert ">\nGreat</textarea>" in page
    assert '<option value="5" selected>' in page

    # the publisher replies from its workspace page
    alpha = logged_in(world.owner)
    page = alpha.get(_url("marketplace_workspace", workspace_slug="alpha")).content.decode()
    assert "Reviews waiting for your reply" in page
    assert "Great" in page
    review = Review.objects.get()
    alpha.post(
        _url("marketplace_reply", workspace_slug="alpha", review_id=review.pk), {"text": "Thanks!"}
    )
    assert Review.objects.get().reply == "Thanks!"


def test_flag_requires_a_reason(world: World, listing: Listing) -> None:
    client = logged_in(world.outsider)
    url = _url("marketplace_flag", slug=listing.slug)
    missing = client.post(url, {"reason": ""})
    assert missing.status_code == 400
    assert not Flag.objects.exists()
    assert "This field is required" in missing.content.decode()
    client.post(url, {"reason": "broken", "details": "Says nothing."})
    assert Flag.objects.get().reason == "broken"


def test_publish_from_the_workspace_and_see_the_decision(world: World, staff: User) -> None:
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="Summariser",
            model="offline:demo",
        )
    alpha = logged_in(world.owner)
    url = _url("marketplace_publish", workspace_slug="alpha")
    form = alpha.get(url).content.decode()
    assert f"agent:{agent.pk}" in form
    bad = alpha.post(
        url, {"source": f"agent:{agent.pk}", "title": "", "summary": "x", "category": "support"}
    )
    assert bad.status_code == 400
    assert "This field is required" in bad.content.decode()
    ok = alpha.post(
        url,
        {
            "source": f"agent:{agent.pk}",
            "title": "Summariser",
            "summary": "Summarises text.",
            "category": "support",
            "tags": "writing, summary",
            "example_inputs": "Summarise this memo\nShorten this email",
        },
    )
    assert ok.status_code == 302
    version = ListingVersion.objects.get(listing__title="Summariser")
    assert version.example_inputs == ["Summarise this memo", "Shorten this email"]
    services.version_reject(user=staff, version=version, reason="Add a description, please.")
    page = alpha.get(_url("marketplace_workspace", workspace_slug="alpha")).content.decode()
    assert "Rejected" in page
    assert "Add a description, please." in page


def test_outsiders_and_anonymous_visitors(world: World, listing: Listing) -> None:
    bravo = logged_in(world.outsider)
    bravo.post(_url("marketplace_install", slug=listing.slug), {"workspace": "bravo"})
    install = Install.objects.get()
    alpha = logged_in(world.owner)
    # alpha's members cannot act on bravo's install, and cannot install into bravo
    assert (
        alpha.post(
            _url("marketplace_upgrade", workspace_slug="alpha", install_id=install.pk)
        ).status_code
        == 404
    )
    assert (
        alpha.post(
            _url("marketplace_uninstall", workspace_slug="alpha", install_id=install.pk)
        ).status_code
        == 404
    )
    assert (
        alpha.post(
            _url("marketplace_uninstall", workspace_slug="bravo", install_id=install.pk)
        ).status_code
        == 404
    )
    alpha.post(_url("marketplace_install", slug=listing.slug), {"workspace": "bravo"})
    assert Install.objects.count() == 1
    assert alpha.get(_url("marketplace_workspace", workspace_slug="bravo")).status_code == 404
    # bravo cannot reply to reviews of alpha's listing
    review = Review.objects.create(listing=listing, workspace=world.workspace_b, rating=3)
    bravo.post(
        _url("marketplace_reply", workspace_slug="bravo", review_id=review.pk), {"text": "Me"}
    )
    assert Review.objects.get().reply == ""
    # anonymous visitors can read but not act
    anonymous = Client()
    assert anonymous.get(_url("marketplace_listing", slug=listing.slug)).status_code == 200
    for name in ("marketplace_install", "marketplace_review", "marketplace_flag"):
        response = anonymous.post(_url(name, slug=listing.slug), {"workspace": "bravo"})
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]
    assert anonymous.get(_url("marketplace_workspace", workspace_slug="alpha")).status_code == 302


NOT_CHARGED = "Billing is not active yet: this listing&#x27;s price ($0.25 per run) is not charged."


def test_a_priced_listing_says_it_is_not_charged_wherever_it_is_offered_or_run(
    world: World, listing: Listing, staff: User
) -> None:
    # given a per-run price on the agent listing and a priced workflow template
    Listing.objects.filter(pk=listing.pk).update(pricing="per_run", price_cents=25)
    definition = {
        "schema_version": 1,
        "inputs": {"name": {"type": "string", "required": True}},
        "steps": [{"id": "greet", "type": "transform", "config": {"value": "Hi {{ input.name }}"}}],
        "output": {"text": "{{ steps.greet }}"},
    }
    with schema_context(world.workspace_a.schema_name):
        workflow = workflow_create(
            access=access_of(world.owner, world.workspace_a), name="Hello", definition=definition
        )
    flow_version = services.listing_publish(
        access=access_of(world.owner, world.workspace_a),
        kind="workflow",
        source_id=workflow.pk,
        title="Hello flow",
        summary="Says hello.",
        category_slug="support",
    )
    services.version_approve(user=staff, version=flow_version)
    Listing.objects.filter(pk=flow_version.listing_id).update(pricing="one_time", price_cents=1900)
    bravo = logged_in(world.outsider)

    # the listing page, before installing
    page = bravo.get(_url("marketplace_listing", slug=listing.slug)).content.decode()
    assert NOT_CHARGED in page
    # the install itself
    response = bravo.post(
        _url("marketplace_install", slug=listing.slug), {"workspace": "bravo"}, follow=True
    )
    assert "installed in Bravo Ltd. " + NOT_CHARGED in response.content.decode()
    # the workspace's installed list and the installed agent's page, where it runs
    mine = bravo.get(_url("marketplace_workspace", workspace_slug="bravo")).content.decode()
    assert NOT_CHARGED in mine
    install = Install.objects.get(workspace=world.workspace_b, listing=listing)
    agent_page = bravo.get(
        _url("agent_detail", workspace_slug="bravo", agent_id=install.object_id)
    ).content.decode()
    assert "Try it" in agent_page
    assert NOT_CHARGED in agent_page
    # the installed workflow's run page
    flow = services.install(
        access=access_of(world.outsider, world.workspace_b),
        listing=Listing.objects.get(pk=flow_version.listing_id),
    )
    run_page = bravo.get(
        _url("workflow_run_start", workspace_slug="bravo", workflow_id=flow.object_id)
    ).content.decode()
    assert "this listing&#x27;s price ($19.00 one-time) is not charged" in run_page

    # a free listing and the workspace's own agents say nothing about billing
    Listing.objects.filter(pk=listing.pk).update(pricing="free", price_cents=0)
    for url in (
        _url("marketplace_listing", slug=listing.slug),
        _url("agent_detail", workspace_slug="bravo", agent_id=install.object_id),
    ):
        assert "Billing is not active" not in bravo.get(url).content.decode()


def test_the_review_form_preselects_no_rating_and_asks_for_one(
    world: World, listing: Listing
) -> None:
    bravo = logged_in(world.outsider)
    bravo.post(_url("marketplace_install", slug=listing.slug), {"workspace": "bravo"})
    services.record_run(
        listing_version_id=listing.current_version_id or 0,
        succeeded=True,
        latency_ms=120,
        cost_usd=Decimal("0"),
        workspace=world.workspace_b,
    )
    page = bravo.get(_url("marketplace_listing", slug=listing.slug)).content.decode()
    assert '<option value="" selected>Choose a rating</option>' in page
    assert "selected>★★★★★" not in page
    url = _url("marketplace_review", slug=listing.slug)
    missing = bravo.post(url, {"workspace": "bravo", "rating": "", "text": "Fine"})
    html = missing.content.decode()
    assert missing.status_code == 400
    assert not Review.objects.exists()
    beside_the_field = '<ul class="errorlist" id="id_rating_error"><li>Choose a rating from one'
    assert beside_the_field in html
    assert 'aria-invalid="true"' in html
    assert ">\nFine</textarea>" in html  # the text is kept
    assert bravo.post(url, {"workspace": "bravo", "rating": "3"}).status_code == 302
    assert Review.objects.get().rating == 3


def test_the_publish_form_accepts_one_emoji_as_icon(world: World, staff: User) -> None:
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(
            access=access_of(world.owner, world.workspace_a), name="Iconic", model="offline:demo"
        )
    alpha = logged_in(world.owner)
    url = _url("marketplace_publish", workspace_slug="alpha")
    fields = {
        "source": f"agent:{agent.pk}",
        "title": "Iconic",
        "summary": "Has an icon.",
        "category": "support",
    }
    for text in ("hello", "🙂🙂", "A"):
        refused = alpha.post(url, {**fields, "icon": text})
        html = refused.content.decode()
        assert refused.status_code == 400, text
        assert '<ul class="errorlist" id="id_icon_error"><li>Use a single emoji, such as 🧾' in html
    assert not ListingVersion.objects.exists()
    assert alpha.post(url, {**fields, "icon": "🧑‍💻"}).status_code == 302
    assert Listing.objects.get(title="Iconic").icon == "🧑‍💻"
    # The service refuses it too (the API and the catalogue importer go through it).
    with pytest.raises(ValidationFailed) as refused_by_service:
        services.listing_publish(
            access=access_of(world.owner, world.workspace_a),
            kind="agent",
            source_id=agent.pk,
            title="Iconic",
            summary="Has an icon.",
            category_slug="support",
            icon="<b>",
        )
    assert refused_by_service.value.fields == {"icon": [ICON_ERROR]}


def test_workspaces_of_the_same_name_can_be_told_apart_in_pickers(
    world: World, listing: Listing
) -> None:
    # given a second workspace of the owner's, named like the first ("Alpha Inc")
    (twin,) = Workspace.objects.bulk_create(
        [Workspace(schema_name="ws_alpha_twin", name="Alpha Inc", slug="alpha-twin")]
    )
    Membership.objects.create(user=world.owner, workspace=twin, role=Role.OWNER)
    alpha = logged_in(world.owner)
    page = alpha.get(_url("marketplace_listing", slug=listing.slug)).content.decode()
    # the install picker names each with its address
    assert '<option value="alpha">Alpha Inc (/w/alpha/)</option>' in page
    assert '<option value="alpha-twin">Alpha Inc (/w/alpha-twin/)</option>' in page
    # and so does the workspace switcher of every page
    assert '<span class="dropdown__item-sub">/w/alpha-twin/</span>' in page
    assert '<span class="dropdown__item-sub">/w/alpha/</span>' in page
    # a name used once stays as it is
    bravo_page = logged_in(world.outsider).get(_url("marketplace_listing", slug=listing.slug))
    assert 'title="Bravo Ltd">Bravo Ltd</span></button>' in bravo_page.content.decode()
