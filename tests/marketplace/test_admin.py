"""The moderation queue in the back-office: staff see pending versions with a diff against the
previous version, approve, reject with a reason; people who are not staff cannot get in."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from accounts.models import User
from agents.services import agent_create, agent_update
from marketplace import services
from marketplace.models import Category, Listing, ListingVersion
from tests.helpers.personas import World, access_of, logged_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(world: World) -> Client:
    return logged_in(User.objects.create_superuser(email="staff@platform.test", password="x"))


def _url(view: str, *args: Any) -> str:
    return reverse(f"admin:marketplace_listingversion_{view}", args=args)


@pytest.fixture
def two_versions(world: World) -> tuple[ListingVersion, ListingVersion]:
    """Version 1 approved, version 2 (a new system prompt) pending."""
    Category.objects.create(slug="support", name="Support")
    alpha = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        agent_id = agent_create(
            access=alpha, name="Helper", model="offline:demo", system_prompt="Be brief."
        ).pk

    def publish() -> ListingVersion:
        return services.listing_publish(
            access=alpha,
            kind="agent",
            source_id=agent_id,
            title="Helper",
            summary="Helps.",
            category_slug="support",
        )

    v1 = publish()
    staff = User.objects.create_superuser(email="first@platform.test", password="x")
    services.version_approve(user=staff, version=v1)
    with schema_context(world.workspace_a.schema_name):
        agent_update(access=alpha, agent_id=agent_id, system_prompt="Be long.")
    return v1, publish()


def test_queue_lists_pending_and_change_page_shows_diff(
    staff_client: Client, two_versions: tuple[ListingVersion, ListingVersion]
) -> None:
    _, v2 = two_versions
    queue = staff_client.get(_url("changelist"), follow=True)
    assert queue.status_code == 200
    assert "Helper v2" in queue.content.decode()
    assert "Helper v1" not in queue.content.decode()

    page = staff_client.get(_url("change", v2.pk)).content.decode()
    assert "definition-diff" in page
    assert "-    &quot;system_prompt&quot;: &quot;Be brief.&quot;" in page
    assert "+    &quot;system_prompt&quot;: &quot;Be long.&quot;" in page
    assert 'name="reason"' in page
    assert 'name="decision"' in page


def test_staff_approves_in_the_admin(
    staff_client: Client, two_versions: tuple[ListingVersion, ListingVersion]
) -> None:
    _, v2 = two_versions
    response = staff_client.post(_url("change", v2.pk), {"decision": "approve", "reason": ""})
    assert response.status_code == 302
    v2.refresh_from_db()
    assert v2.status == ListingVersion.Status.APPROVED
    assert v2.moderated_by is not None
    assert v2.moderated_by.email == "staff@platform.test"
    assert Listing.objects.get(pk=v2.listing_id).current_version_id == v2.pk


def test_staff_rejects_with_a_reason(
    staff_client: Client, two_versions: tuple[ListingVersion, ListingVersion]
) -> None:
    v1, v2 = two_versions
    # no reason: the form says so and nothing changes
    refused = staff_client.post(_url("change", v2.pk), {"decision": "reject", "reason": ""})
    assert refused.status_code == 200
    assert "Give a reason for the publisher." in refused.content.decode()
    v2.refresh_from_db()
    assert v2.status == ListingVersion.Status.PENDING

    done = staff_client.post(
        _url("change", v2.pk), {"decision": "reject", "reason": "The prompt is unsafe."}
    )
    assert done.status_code == 302
    v2.refresh_from_db()
    assert v2.status == ListingVersion.Status.REJECTED
    assert v2.moderation_reason == "The prompt is unsafe."
    assert Listing.objects.get(pk=v2.listing_id).current_version_id == v1.pk


def test_listing_admin_unlists(
    staff_client: Client, two_versions: tuple[ListingVersion, ListingVersion]
) -> None:
    v1, _ = two_versions
    response = staff_client.post(
        reverse("admin:marketplace_listing_changelist"),
        {"action": "unlist", "_selected_action": [v1.listing_id]},
    )
    assert response.status_code == 302
    assert not Listing.objects.get(pk=v1.listing_id).is_public
    for model in ("listing", "flag", "review", "install", "category", "publisher"):
        page = staff_client.get(reverse(f"admin:marketplace_{model}_changelist"))
        assert page.status_code == 200, model


def test_non_staff_is_redirected(
    world: World, two_versions: tuple[ListingVersion, ListingVersion]
) -> None:
    _, v2 = two_versions
    client = logged_in(world.owner)
    for url in (_url("changelist"), _url("change", v2.pk)):
        response = client.get(url)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
    client.post(_url("change", v2.pk), {"decision": "approve"})
    v2.refresh_from_db()
    assert v2.status == ListingVersion.Status.PENDING
