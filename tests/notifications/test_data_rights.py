"""A person's notifications are theirs: listed in full for an export, erased on request, and
nobody else's are touched."""

from __future__ import annotations

import pytest
from django.db import models

from notifications.kinds import Kind
from notifications.models import Notification, Preference
from notifications.selectors import notifications_export, notifications_for_user
from notifications.services import (
    Event,
    notifications_delete_for_user,
    notify,
    preferences_set,
)
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db


def test_export_lists_everything_held_and_erasure_deletes_only_that_person(world: World) -> None:
    preferences_set(user=world.member, choices={Kind.RUN_FAILED: (False, True)})
    for key, kind in (("a", Kind.RUN_FAILED), ("b", Kind.APPROVAL_WAITING)):
        notify(
            user_ids=[world.member.pk, world.owner.pk],
            event=Event(kind=kind, dedupe_key=key, title=f"Event {key}"),
        )
    # an email-only notification is held too, and exported
    assert notifications_for_user(user_id=world.member.pk).count() == 2
    exported = notifications_export(user_id=world.member.pk)
    assert sorted(n["title"] for n in exported["notifications"]) == ["Event a", "Event b"]
    run_failed = next(p for p in exported["preferences"] if p["kind"] == Kind.RUN_FAILED)
    assert run_failed == {"kind": "run_failed", "in_app": False, "email": True}

    assert notifications_delete_for_user(user_id=world.member.pk) == 2
    assert not Notification.objects.filter(user=world.member).exists()
    assert not Preference.objects.filter(user=world.member).exists()
    assert Notification.objects.filter(user=world.owner).count() == 2


def test_an_account_deleted_takes_its_notifications_with_it() -> None:
    """What an account erasure relies on: deleting the user row cascades to the person's
    notifications and preferences."""
    for model in (Notification, Preference):
        assert model._meta.get_field("user").remote_field.on_delete is models.CASCADE
