"""Signed run webhooks against a real loopback HTTP receiver, and the outbound-URL guard."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from agents import services
from agents.models import AgentRun, WebhookDelivery
from agents.outbound.guard import check_public_url
from agents.runs.executor import execute_run
from agents.webhooks import SIGNATURE_HEADER, verify, webhook_attempt, webhook_secret_rotate
from core.exceptions import PermissionDenied, ValidationFailed
from tenants.models import Workspace
from tenants.permissions import Access, Perm
from tenants.services import api_key_create
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings) -> Iterator[WebhookReceiver]:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the receiver lives on loopback
    with WebhookReceiver() as r:
        yield r


def _finished_run_with_callback(access: Access, workspace: Workspace, url: str) -> AgentRun:
    with schema_context(workspace.schema_name):
        agent = services.agent_create(access=access, name="Notifier", model="offline:demo")
        run = services.agent_run_start(
            access=access, agent_id=agent.pk, input="ping", callback_url=url
        )
        execute_run(run.pk)
        run.refresh_from_db()
        return run


def test_a_finished_run_is_posted_signed_and_retried_until_delivered(
    world: World, owner_access: Access, receiver: WebhookReceiver
) -> None:
    secret = webhook_secret_rotate(access=owner_access)
    receiver.statuses = [503]
    run = _finished_run_with_callback(owner_access, world.workspace_a, receiver.url)
    with schema_context(world.workspace_a.schema_name):
        delivery = WebhookDelivery.objects.get(run=run)
        first_wait = webhook_attempt(delivery.pk)
        after_first = WebhookDelivery.objects.get(pk=delivery.pk)
        second_wait = webhook_attempt(delivery.pk)
        delivered = WebhookDelivery.objects.get(pk=delivery.pk)

    assert first_wait == 10.0  # WEBHOOK_BACKOFF_BASE_SECONDS, doubling after each failure
    assert (after_first.status, after_first.attempts, after_first.last_status_code) == (
        "pending",
        1,
        503,
    )
    assert second_wait is None
    assert (delivered.status, delivered.attempts, delivered.last_status_code) == (
        "delivered",
        2,
        200,
    )
    request = receiver.received[-1]
    assert verify(secret, request["headers"][SIGNATURE_HEADER.lower()], request["body"])
    assert not verify("whsec_wrong", request["headers"][SIGNATURE_HEADER.lower()], request["body"])
    payload = json.loads(request["body"])
    assert payload["event"] == "agent_run.finished"
    assert payload["run"]["id"] == run.pk
    assert payload["run"]["status"] == "succeeded"


def test_a_tampered_body_or_stale_timestamp_fails_verification() -> None:
    from agents.webhooks import sign

    header = sign("whsec_k", 1_700_000_000, b'{"a":1}')
    assert not verify("whsec_k", header, b'{"a":1}')  # years old: replay refused
    import time

    fresh = sign("whsec_k", int(time.time()), b'{"a":1}')
    assert verify("whsec_k", fresh, b'{"a":1}')
    assert not verify("whsec_k", fresh, b'{"a":2}')


def test_redirects_are_not_followed(
    world: World, owner_access: Access, receiver: WebhookReceiver
) -> None:
    receiver.statuses = [302]
    run = _finished_run_with_callback(owner_access, world.workspace_a, receiver.url)
    with schema_context(world.workspace_a.schema_name):
        delivery = WebhookDelivery.objects.get(run=run)
        webhook_attempt(delivery.pk)
        delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert delivery.last_status_code == 302
    assert len(receiver.received) == 1  # nothing went to the metadata address


def test_delivery_gives_up_after_the_last_attempt(
    world: World, owner_access: Access, receiver: WebhookReceiver, settings
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver.statuses = [500, 500]
    run = _finished_run_with_callback(owner_access, world.workspace_a, receiver.url)
    with schema_context(world.workspace_a.schema_name):
        delivery = WebhookDelivery.objects.get(run=run)
        webhook_attempt(delivery.pk)
        assert webhook_attempt(delivery.pk) is None
        delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest/",
        "http://[::1]/x",
        "http://localhost/x",
        "ftp://example.com/x",
        "http:///nohost",
    ],
)
def test_callbacks_to_internal_or_odd_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        check_public_url(url, field="callback_url")
    assert "callback_url" in excinfo.value.fields


def test_api_refuses_an_internal_callback_url_naming_the_field(world: World) -> None:
    _, secret = api_key_create(
        access=access_of(world.owner, world.workspace_a),
        name="k",
        scopes=[Perm.BUILD, Perm.RUN, Perm.WORKSPACE_VIEW],
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    agent_id = client.post(
        "/api/v1/agents/", {"name": "A", "model": "offline:demo"}, format="json"
    ).json()["id"]
    response = client.post(
        f"/api/v1/agents/{agent_id}/runs/",
        {"input": "hi", "callback_url": "http://169.254.169.254/"},
        format="json",
    )
    assert response.status_code == 400
    assert "callback_url" in response.json()["error"]["fields"]


def test_the_webhook_secret_is_encrypted_shown_once_and_owner_only(world: World) -> None:
    client = APIClient()
    client.force_login(world.owner)
    response = client.post("/api/v1/webhook-secret/", HTTP_X_WORKSPACE="alpha")
    secret = response.json()["secret"]
    stored = Workspace.objects.get(slug="alpha").webhook_secret_encrypted
    assert response.status_code == 201
    assert secret.startswith("whsec_")
    assert secret not in stored
    with pytest.raises(PermissionDenied):
        webhook_secret_rotate(access=access_of(world.member, world.workspace_a))
    outsider = APIClient()
    outsider.force_login(world.outsider)
    assert outsider.post("/api/v1/webhook-secret/", HTTP_X_WORKSPACE="alpha").status_code == 404
