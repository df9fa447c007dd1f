"""Flags: one open report per person and listing, enforced by the database; the page says so
kindly, the API answers 409, and once staff resolve a report the person may report again."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from rest_framework.test import APIClient

from core.exceptions import Conflict
from marketplace import services
from marketplace.models import Category, Flag, Listing, Publisher
from tests.helpers.marketplace import make_listing
from tests.helpers.personas import World, logged_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def listing(publisher: Publisher, categories: dict[str, Category]) -> Listing:
    return make_listing(
        publisher=publisher,
        category=categories["support"],
        title="Inbox Concierge",
        summary="Answers customer emails.",
        slug="inbox-concierge",
    )


def test_a_second_open_flag_by_the_same_person_is_refused_by_the_database(
    world: World, listing: Listing
) -> None:
    Flag.objects.create(listing=listing, reporter=world.outsider, reason="spam")
    with pytest.raises(IntegrityError), transaction.atomic():
        Flag.objects.create(listing=listing, reporter=world.outsider, reason="broken")
    # Another person may still report it.
    Flag.objects.create(listing=listing, reporter=world.member, reason="spam")


def test_flagging_twice_is_a_conflict_until_staff_resolve_the_first(
    world: World, listing: Listing
) -> None:
    first = services.flag_create(user=world.outsider, listing=listing, reason="spam")
    with pytest.raises(Conflict) as excinfo:
        services.flag_create(user=world.outsider, listing=listing, reason="broken")
    assert "already flagged" in excinfo.value.message

    staff = world.owner
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    services.flag_resolve(user=staff, flag=first, resolution="Checked, fine.")
    again = services.flag_create(user=world.outsider, listing=listing, reason="broken")
    assert again.pk != first.pk
    assert Flag.objects.filter(listing=listing, resolved_at__isnull=True).count() == 1


def test_the_page_says_you_already_flagged_it_instead_of_an_error(
    world: World, listing: Listing
) -> None:
    client = logged_in(world.outsider)
    url = reverse("marketplace_flag", kwargs={"slug": listing.slug})
    assert client.post(url, {"reason": "spam"}).status_code == 302

    again = client.post(url, {"reason": "spam"}, follow=True)

    assert again.status_code == 200
    assert "You already flagged this listing" in again.content.decode()
    assert Flag.objects.filter(listing=listing).count() == 1


def test_the_api_answers_409_to_a_second_flag(world: World, listing: Listing) -> None:
    api = APIClient()
    api.force_authenticate(world.outsider)
    url = f"/api/v1/marketplace/listings/{listing.slug}/flags/"
    body: dict[str, Any] = {"reason": "spam"}
    assert api.post(url, body, format="json").status_code == 201
    second = api.post(url, body, format="json")
    assert second.status_code == 409
    assert "already flagged" in second.json()["error"]["message"]
