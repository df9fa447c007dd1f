"""Marketplace writes: publish → approve → install → run → review, pinned installs and
upgrades, secrets never in a snapshot, and what an outsider may not do."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django_tenants.utils import schema_context

from accounts.models import User
from agents.gateway import aliases
from agents.models import Agent, KnowledgeBase, ProviderCredential
from agents.services import agent_create
from billing.models import ModelPrice
from core.exceptions import Conflict, NotFound, PermissionDenied, ValidationFailed
from marketplace import services
from marketplace.models import Category, Flag, Install, Listing, ListingVersion
from tests.helpers.personas import World, access_of
from workflows.models import Workflow
from workflows.services import workflow_create

pytestmark = pytest.mark.django_db

SECRET_KEY = "sk-very-secret-key-1234"


@pytest.fixture
def category(world: World) -> Category:
    return Category.objects.create(slug="support", name="Support")


@pytest.fixture
def staff(world: World) -> User:
    return User.objects.create_superuser(email="mod@platform.test", password="x")


def _agent(world: World, name: str = "Helper", **config: Any) -> int:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        settings = {"model": "offline:demo", "system_prompt": "Be brief.", **config}
        return agent_create(access=access, name=name, **settings).pk


def _publish(world: World, source_id: int, kind: str = "agent", **extra: Any) -> ListingVersion:
    fields: dict[str, Any] = {
        "title": "Helpful agent",
        "summary": "Answers briefly.",
        "category_slug": "support",
        "tags": ["Support"],
    }
    fields.update(extra)
    return services.listing_publish(
        access=access_of(world.owner, world.workspace_a), kind=kind, source_id=source_id, **fields
    )


def test_publish_approve_install_run_review(world: World, category: Category, staff: User) -> None:
    # given an agent of alpha published and approved
    version = _publish(world, _agent(world))
    assert version.number == 1
    assert version.status == ListingVersion.Status.PENDING
    assert not version.listing.is_public
    services.version_approve(user=staff, version=version)
    listing = Listing.objects.get(pk=version.listing_id)
    assert listing.is_public
    assert listing.published_at is not None
    assert listing.current_version_id == version.pk

    # when bravo installs it
    bravo = access_of(world.outsider, world.workspace_b)
    installed = services.install(access=bravo, listing=listing)
    with pytest.raises(Conflict, match="already installed"):
        services.install(access=bravo, listing=listing)
    with schema_context(world.workspace_b.schema_name):
        copy = Agent.objects.get(pk=installed.object_id)
        assert copy.listing_version_id == version.pk
        assert copy.current_version is not None
        assert copy.current_version.model == "default"
    listing.refresh_from_db()
    assert listing.install_count == 1

    # then runs are recorded as numbers and a review is accepted
    services.record_run(
        listing_version_id=version.pk,
        succeeded=True,
        latency_ms=100,
        cost_usd=Decimal("0.01"),
        workspace=world.workspace_b,
    )
    services.record_run(
        listing_version_id=version.pk,
        succeeded=False,
        latency_ms=300,
        cost_usd=Decimal("0.03"),
        workspace=world.workspace_b,
    )
    listing.refresh_from_db()
    assert listing.run_count == 2
    assert listing.success_rate == pytest.approx(0.5)
    assert listing.p95_latency_ms == 290
    assert listing.median_cost_usd == Decimal("0.020000")
    assert Install.objects.get(pk=installed.pk).runs_completed == 2

    review = services.review_save(access=bravo, listing=listing, rating=4, text="Good")
    again = services.review_save(access=bravo, listing=listing, rating=2, text="Meh")
    assert again.pk == review.pk
    listing.refresh_from_db()
    assert listing.review_count == 1
    assert listing.rating_avg == Decimal("2.00")
    with pytest.raises(ValidationFailed) as bad:
        services.review_save(access=bravo, listing=listing, rating=6)
    assert "rating" in bad.value.fields

    # the publisher replies once; bravo cannot reply
    with pytest.raises(PermissionDenied):
        services.review_reply(access=bravo, review=review, text="Thanks")
    alpha = access_of(world.owner, world.workspace_a)
    services.review_reply(access=alpha, review=review, text="Thanks")
    with pytest.raises(Conflict):
        services.review_reply(access=alpha, review=review, text="Again")

    # uninstall archives the copy and lowers the count
    services.uninstall(access=bravo, install=installed)
    listing.refresh_from_db()
    assert listing.install_count == 0
    with schema_context(world.workspace_b.schema_name):
        assert Agent.objects.get(pk=installed.object_id).archived_at is not None


def test_reviewer_who_never_ran_is_refused(world: World, category: Category, staff: User) -> None:
    version = _publish(world, _agent(world))
    services.version_approve(user=staff, version=version)
    bravo = access_of(world.outsider, world.workspace_b)
    with pytest.raises(PermissionDenied, match="ran it at least once"):
        services.review_save(access=bravo, listing=version.listing, rating=5)
    services.install(access=bravo, listing=Listing.objects.get(pk=version.listing_id))
    with pytest.raises(PermissionDenied):
        services.review_save(access=bravo, listing=version.listing, rating=5)


def test_snapshot_never_contains_secrets_or_knowledge(world: World, category: Category) -> None:
    owner = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        credential = ProviderCredential(name="private", kind="openai_compatible")
        credential.base_url = "http://10.1.2.3:8000/v1"
        credential.set_api_key(SECRET_KEY)
        credential.save()
        aliases.alias_save(
            access=owner,
            name="smart",
            targets=[
                aliases.TargetSpec(
                    kind="openai_compatible", model="llama", credential_id=credential.pk
                )
            ],
        )
        base = KnowledgeBase.objects.create(name="Confidential handbook", description="payroll")
        # A priced model (an agent may only name models the platform knows).
        ModelPrice.objects.create(
            provider="openai_compatible",
            model="10.1.2.3-llama",
            input_per_mtok=0,
            output_per_mtok=0,
        )
    kb_agent = _agent(
        world,
        "Knower",
        model="smart",
        tools=["knowledge_search", "calculator"],
        knowledge_base_ids=[base.pk],
    )
    direct = _agent(world, "Direct", model="openai_compatible:10.1.2.3-llama")

    version = _publish(world, kb_agent)
    text = json.dumps(version.definition)
    spec = version.definition["agent"]
    assert SECRET_KEY not in text
    assert "10.1.2.3" not in text
    assert "Confidential" not in text
    assert "knowledge_base_ids" not in text
    assert spec["tools"] == ["calculator"]
    assert spec["model"] == "smart"
    assert version.required_tools == ["calculator"]
    assert version.required_providers == ["openai_compatible"]

    other = _publish(world, direct, title="Direct one")
    assert other.definition["agent"]["model"] == "default"
    assert "10.1.2.3" not in json.dumps(other.definition)


def test_installed_copy_stays_pinned_until_upgrade(
    world: World, category: Category, staff: User
) -> None:
    # given a workflow asking an agent, published and installed by bravo (who has an agent
    # of the same name already)
    alpha = access_of(world.owner, world.workspace_a)
    agent_id = _agent(world, "Writer")
    definition = {
        "schema_version": 1,
        "inputs": {"topic": {"type": "string", "required": True}},
        "steps": [
            {"id": "write", "type": "agent", "config": {"agent": "Writer", "prompt": "x"}},
        ],
        "output": {"text": "{{ steps.write }}"},
    }
    with schema_context(world.workspace_a.schema_name):
        workflow = workflow_create(access=alpha, name="Writing", definition=definition)
    v1 = _publish(world, workflow.pk, kind="workflow", title="Writing flow")
    assert [a["name"] for a in v1.definition["agents"]] == ["Writer"]
    services.version_approve(user=staff, version=v1)
    bravo = access_of(world.outsider, world.workspace_b)
    with schema_context(world.workspace_b.schema_name):
        agent_create(access=bravo, name="Writer", model="offline:demo")
    installed = services.install(access=bravo, listing=Listing.objects.get(pk=v1.listing_id))
    with schema_context(world.workspace_b.schema_name):
        copy = Workflow.objects.get(pk=installed.object_id)
        assert copy.listing_version_id == v1.pk
        pinned = copy.active_version.definition
        assert pinned["steps"][0]["config"]["agent"] == "Writer (from marketplace)"

    # when alpha publishes version 2 (a new prompt) and it is approved
    from agents.services import agent_update

    with schema_context(world.workspace_a.schema_name):
        agent_update(access=alpha, agent_id=agent_id, system_prompt="Be long.")
    v2 = _publish(world, workflow.pk, kind="workflow", title="Writing flow")
    assert v2.listing_id == v1.listing_id
    assert v2.number == 2
    services.version_approve(user=staff, version=v2)

    # then bravo's copy is unchanged until it upgrades
    with schema_context(world.workspace_b.schema_name):
        copy.refresh_from_db()
        assert copy.listing_version_id == v1.pk
        assert copy.active_version.definition == pinned
        writer = Agent.objects.get(name="Writer (from marketplace)")
        assert writer.current_version.system_prompt == "Be brief."
    services.upgrade(access=bravo, install=installed)
    with schema_context(world.workspace_b.schema_name):
        copy.refresh_from_db()
        writer.refresh_from_db()
        assert copy.listing_version_id == v2.pk
        assert writer.current_version.system_prompt == "Be long."
        assert Agent.objects.filter(name__startswith="Writer").count() == 2
    assert Install.objects.get(pk=installed.pk).version_id == v2.pk


def test_agent_upgrade_makes_a_new_version(world: World, category: Category, staff: User) -> None:
    from agents.services import agent_update

    agent_id = _agent(world)
    v1 = _publish(world, agent_id)
    services.version_approve(user=staff, version=v1)
    bravo = access_of(world.outsider, world.workspace_b)
    installed = services.install(access=bravo, listing=Listing.objects.get(pk=v1.listing_id))
    with schema_context(world.workspace_a.schema_name):
        agent_update(
            access=access_of(world.owner, world.workspace_a), agent_id=agent_id, max_tokens=99
        )
    v2 = _publish(world, agent_id)
    services.version_approve(user=staff, version=v2)
    with schema_context(world.workspace_b.schema_name):
        assert Agent.objects.get(pk=installed.object_id).current_version.max_tokens == 1024
    services.upgrade(access=bravo, install=installed)
    with schema_context(world.workspace_b.schema_name):
        copy = Agent.objects.get(pk=installed.object_id)
        assert copy.current_version.max_tokens == 99
        assert copy.current_version.number == 2
        assert copy.listing_version_id == v2.pk
    with pytest.raises(Conflict):
        services.upgrade(access=bravo, install=installed)


def test_rejected_listing_is_not_public(world: World, category: Category, staff: User) -> None:
    version = _publish(world, _agent(world))
    with pytest.raises(ValidationFailed) as no_reason:
        services.version_reject(user=staff, version=version, reason=" ")
    assert "reason" in no_reason.value.fields
    services.version_reject(user=staff, version=version, reason="Misleading title")
    version.refresh_from_db()
    assert version.status == ListingVersion.Status.REJECTED
    assert version.moderated_by == staff
    assert version.moderated_at is not None
    listing = Listing.objects.get(pk=version.listing_id)
    assert not listing.is_public
    with pytest.raises(NotFound):
        services.install(access=access_of(world.outsider, world.workspace_b), listing=listing)
    with pytest.raises(Conflict):
        services.version_approve(user=staff, version=version)


def test_only_staff_moderate(world: World, category: Category) -> None:
    version = _publish(world, _agent(world))
    with pytest.raises(PermissionDenied):
        services.version_approve(user=world.owner, version=version)
    with pytest.raises(PermissionDenied):
        services.version_request_changes(user=world.owner, version=version, reason="no")


def test_outsider_cannot_publish_to_alphas_listing(world: World, category: Category) -> None:
    version = _publish(world, _agent(world))
    bravo = access_of(world.outsider, world.workspace_b)
    with schema_context(world.workspace_b.schema_name):
        theirs = agent_create(access=bravo, name="Copycat", model="offline:demo").pk
    with pytest.raises(PermissionDenied, match="another publisher"):
        services.listing_publish(
            access=bravo,
            kind="agent",
            source_id=theirs,
            title="Hijack",
            summary="x",
            category_slug="support",
            slug=version.listing.slug,
        )
    # nor can it publish alpha's agent by id (ids are read in its own schema)
    with pytest.raises(NotFound):
        services.listing_publish(
            access=bravo,
            kind="agent",
            source_id=version.source_id + 1000,
            title="Hijack",
            summary="x",
            category_slug="support",
        )
    assert ListingVersion.objects.filter(listing=version.listing).count() == 1


def test_publish_errors_name_fields(world: World, category: Category) -> None:
    with pytest.raises(ValidationFailed) as failed:
        _publish(world, _agent(world), title="", category_slug="nope")
    assert set(failed.value.fields) == {"title", "category_slug"}


def test_flags_and_unlisting(world: World, category: Category, staff: User) -> None:
    version = _publish(world, _agent(world))
    services.version_approve(user=staff, version=version)
    listing = version.listing
    with pytest.raises(ValidationFailed) as failed:
        services.flag_create(user=world.outsider, listing=listing, reason="other")
    assert "details" in failed.value.fields
    with pytest.raises(ValidationFailed):
        services.flag_create(user=world.outsider, listing=listing, reason="meh")
    flag = services.flag_create(user=world.outsider, listing=listing, reason=Flag.Reason.SPAM)
    services.flag_resolve(user=staff, flag=flag, resolution="Checked")
    assert flag.resolved_by == staff
    services.listing_unlist(user=staff, listing=listing, reason="Spam")
    assert not Listing.objects.get(pk=listing.pk).is_public
    services.listing_relist(user=staff, listing=listing)
    assert Listing.objects.get(pk=listing.pk).is_public
