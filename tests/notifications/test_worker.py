"""Notification emails are sent by a real Celery worker process, not by the request."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications.kinds import Kind
from notifications.models import Notification
from notifications.services import Event, notification_emails_requeue, notify_on_commit
from tenants.tasks import inventory
from tests.helpers.personas import World

pytestmark = pytest.mark.worker


def barrier(world: World) -> None:
    """Wait until the worker has handled everything queued before (one FIFO queue, one
    message at a time): a task of its own, in a workspace, answered."""
    with schema_context(world.workspace_a.schema_name):
        inventory.apply_async().get(timeout=60)


def test_the_worker_sends_a_pending_email_once(committed_world: World, worker_queue: Any) -> None:
    world = committed_world
    event = Event(kind=Kind.RUN_FAILED, dedupe_key="w1", title="Workflow run #3 failed")
    notify_on_commit(user_ids=[world.member.pk], event=event)  # autocommit: runs at once
    notification = Notification.objects.get(user=world.member)
    barrier(world)
    notification.refresh_from_db()
    assert notification.email == Notification.Email.SENT
    assert notification.emailed_at is not None
    notify_on_commit(user_ids=[world.member.pk], event=event)  # delivered again: nothing new
    barrier(world)
    assert Notification.objects.filter(user=world.member).count() == 1


def test_an_email_whose_message_was_lost_is_sent_by_the_sweep(
    committed_world: World, worker_queue: Any
) -> None:
    # given: a notification whose email is pending but whose task message never reached the
    # broker (made here without queueing it), ten minutes ago
    world = committed_world
    notification = Notification.objects.create(
        user=world.member,
        kind=Kind.RUN_FAILED,
        title="Workflow run #4 failed",
        dedupe_key="lost-message",
        email=Notification.Email.PENDING,
    )
    made = timezone.now() - timedelta(minutes=10)
    Notification.objects.filter(pk=notification.pk).update(created_at=made)
    fresh = Notification.objects.create(
        user=world.member,
        kind=Kind.RUN_FAILED,
        title="Workflow run #5 failed",
        dedupe_key="just-queued",
        email=Notification.Email.PENDING,
    )

    # when: the beat's sweep runs
    assert notification_emails_requeue() == 1  # the fresh one's message may still come

    # then: the worker sends the lost one, once
    barrier(world)
    notification.refresh_from_db()
    assert notification.email == Notification.Email.SENT
    fresh.refresh_from_db()
    assert fresh.email == Notification.Email.PENDING
    assert notification_emails_requeue() == 0
