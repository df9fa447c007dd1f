"""The completion webhook of a workflow run: one signed `workflow_run.finished` POST to the
run's callback URL, signed and retried exactly like the agents' run webhooks, with every
attempt on the delivery log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import WebhookDelivery
from agents.webhooks import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    verify,
    webhook_attempt,
    webhook_secret_rotate,
)
from tenants.permissions import Access
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers.personas import World
from workflows.models import Workflow, WorkflowRun, WorkflowVersion
from workflows.notify import run_finished_webhook

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings) -> Iterator[WebhookReceiver]:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the receiver lives on loopback
    with WebhookReceiver() as r:
        yield r


def _finished_run(url: str, *, status: str = "succeeded") -> WorkflowRun:
    workflow = Workflow.objects.create(name="Lead scoring")
    version = WorkflowVersion.objects.create(
        workflow=workflow,
        number=3,
        definition={"schema_version": 1, "steps": [], "edges": []},
    )
    now = timezone.now()
    return WorkflowRun.objects.create(
        workflow=workflow,
        version=version,
        status=status,
        trigger=WorkflowRun.TriggerKind.API,
        inputs={"lead": "ACME"},
        output={"score": 87} if status == "succeeded" else None,
        error="" if status == "succeeded" else "step score failed: boom",
        input_tokens=120,
        output_tokens=30,
        cost_usd=Decimal("0.001250"),
        callback_url=url,
        started_at=now,
        finished_at=now,
    )


def test_a_finished_run_posts_a_signed_payload_and_retries_until_delivered(
    world: World, owner_access: Access, receiver: WebhookReceiver
) -> None:
    secret = webhook_secret_rotate(access=owner_access)
    receiver.statuses = [500]
    with schema_context(world.workspace_a.schema_name):
        run = _finished_run(receiver.url)
        with transaction.atomic():  # the engine calls it inside the finishing transaction
            delivery = run_finished_webhook(run)
        assert delivery is not None
        first_wait = webhook_attempt(delivery.pk)
        second_wait = webhook_attempt(delivery.pk)
        delivery.refresh_from_db()

    assert first_wait == 10.0  # backoff
    assert second_wait is None  # then delivered
    assert (delivery.workflow_run_id, delivery.status, delivery.attempts) == (
        run.pk,
        "delivered",
        2,
    )
    request = receiver.received[-1]
    assert verify(secret, request["headers"][SIGNATURE_HEADER.lower()], request["body"])
    assert request["headers"][EVENT_HEADER.lower()] == "workflow_run.finished"
    payload = json.loads(request["body"])
    assert payload["event"] == "workflow_run.finished"
    body = payload["run"]
    assert body["id"] == run.pk
    assert body["workflow"] == {"id": run.workflow_id, "name": "Lead scoring"}
    assert (body["version"], body["status"], body["output"]) == (3, "succeeded", {"score": 87})
    assert (body["input_tokens"], body["output_tokens"], body["cost_usd"]) == (120, 30, "0.001250")
    assert body["finished_at"] is not None
    assert body["created_at"] is not None


def test_a_failed_run_reports_its_error(
    world: World, receiver: WebhookReceiver, owner_access: Access
) -> None:
    with schema_context(world.workspace_a.schema_name):
        run = _finished_run(receiver.url, status="failed")
        delivery = run_finished_webhook(run)
        assert delivery is not None
        webhook_attempt(delivery.pk)
    payload = json.loads(receiver.received[-1]["body"])
    assert payload["run"]["status"] == "failed"
    assert payload["run"]["error"] == "step score failed: boom"


def test_the_same_ending_is_posted_once_and_runs_without_a_url_or_unfinished_not_at_all(
    world: World,
) -> None:
    with schema_context(world.workspace_a.schema_name):
        run = _finished_run("https://hooks.example.com/runs")
        first = run_finished_webhook(run)
        again = run_finished_webhook(run)  # a redelivered finishing task
        assert first is not None
        assert again is not None
        assert first.pk == again.pk

        silent = _finished_run("")
        assert run_finished_webhook(silent) is None
        going = _finished_run("https://hooks.example.com/runs", status="running")
        assert run_finished_webhook(going) is None
        assert WebhookDelivery.objects.filter(workflow_run_id__isnull=False).count() == 1


def test_a_resumed_run_that_ends_again_is_posted_again(world: World) -> None:
    with schema_context(world.workspace_a.schema_name):
        run = _finished_run("https://hooks.example.com/runs", status="failed")
        run_finished_webhook(run)
        run.status = "succeeded"
        run.finished_at = timezone.now() + timedelta(seconds=5)
        run.save()
        run_finished_webhook(run)
        statuses = sorted(
            d.payload["run"]["status"]
            for d in WebhookDelivery.objects.filter(workflow_run_id=run.pk)
        )
    assert statuses == ["failed", "succeeded"]
