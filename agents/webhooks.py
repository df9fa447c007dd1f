"""Signed outbound webhooks: when an agent run or a workflow run ends, its callback URL gets a POST.

Signature: `X-AgentMarket-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` where the HMAC key
is the workspace's webhook secret and the message is `"<t>.<raw body>"`. Receivers recompute
it, compare in constant time and reject old timestamps (replays). Failed deliveries are retried
with exponential backoff; every attempt is recorded on the `WebhookDelivery` row.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from functools import partial
from typing import Any

import httpx2
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from agents.models import AgentRun, WebhookDelivery
from agents.outbound.guard import guarded_client, refusal_in
from core import crypto, metrics
from core.exceptions import ValidationFailed
from core.queue import enqueue
from core.request_context import request_id_var
from tenants import audit
from tenants.models import Workspace
from tenants.permissions import Access, Perm
from tenants.schemas import current_schema

SIGNATURE_HEADER = "X-AgentMarket-Signature"
REQUEST_ID_HEADER = "X-Request-ID"
EVENT_HEADER = "X-AgentMarket-Event"
RUN_FINISHED = "agent_run.finished"
# The task that delivers a webhook (agents/tasks.py declares it under this name).
DELIVER_WEBHOOK_TASK = "agents.deliver_webhook"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def signature_problem(
    secret: str, header: str, body: bytes, *, tolerance_seconds: int = 300
) -> str | None:
    """Why `header` does not sign `body` with `secret` (None when it does). Our inbound hooks
    use it to tell a sender what is wrong; the reasons never reveal the expected value."""
    if not header.strip():
        return f"The {SIGNATURE_HEADER} header is missing."
    try:
        fields = dict(part.strip().split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return f"The {SIGNATURE_HEADER} header must look like t=<unix seconds>,v1=<hex>."
    if abs(time.time() - timestamp) > tolerance_seconds:
        return (
            f"The signature timestamp is more than {tolerance_seconds} seconds away from our "
            "clock (a replay, or the sender's clock is wrong)."
        )
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, fields.get("v1", "")):
        return "The signature does not match the body (wrong secret, or the body was changed)."
    return None


def verify(secret: str, header: str, body: bytes, *, tolerance_seconds: int = 300) -> bool:
    """What a receiver does (and what our tests do): recompute, compare, check freshness."""
    return signature_problem(secret, header, body, tolerance_seconds=tolerance_seconds) is None


@transaction.atomic
def webhook_secret_rotate(*, access: Access) -> str:
    """A new signing secret for the workspace, returned once; the old one stops at once."""
    access.require(Perm.API_KEYS_MANAGE)
    if access.api_key is not None:
        raise ValidationFailed("Rotate the webhook secret from a signed-in session.")
    secret = "whsec_" + secrets.token_urlsafe(32)
    workspace = Workspace.objects.select_for_update().get(pk=access.workspace.pk)
    workspace.webhook_secret_encrypted = crypto.encrypt(secret)
    workspace.save(update_fields=["webhook_secret_encrypted", "updated_at"])
    audit.record_for(access, action=audit.Action.WEBHOOK_SECRET_ROTATED, target=workspace)
    return secret


def _signing_secret() -> str:
    """The current workspace's secret (created on first use, so deliveries are always signed;
    its owner rotates it to learn a value)."""
    with transaction.atomic():
        workspace = Workspace.objects.select_for_update().get(schema_name=current_schema())
        if not workspace.webhook_secret_encrypted:
            workspace.webhook_secret_encrypted = crypto.encrypt(
                "whsec_" + secrets.token_urlsafe(32)
            )
            workspace.save(update_fields=["webhook_secret_encrypted", "updated_at"])
    return crypto.decrypt(workspace.webhook_secret_encrypted)


def run_payload(run: AgentRun) -> dict[str, Any]:
    return {
        "event": RUN_FINISHED,
        "run": {
            "id": run.pk,
            "agent": run.agent_id,
            "status": run.status,
            "output": run.output,
            "error": run.error,
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cost_usd": str(run.cost_usd),
            "created_at": run.created_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        },
    }


def workspace_signing_secret(workspace: Workspace) -> str | None:
    """The workspace's current secret, or None before one was ever made (inbound hooks signed
    with it are refused until an owner rotates one)."""
    if not workspace.webhook_secret_encrypted:
        return None
    return crypto.decrypt(workspace.webhook_secret_encrypted)


def delivery_enqueue(
    *,
    event: str,
    url: str,
    payload: dict[str, Any],
    run: AgentRun | None = None,
    workflow_run_id: int | None = None,
) -> WebhookDelivery:
    """Record a delivery and send it once the caller's transaction commits (then retried with
    backoff by `agents.deliver_webhook`). Call inside the transaction that finished the run."""
    delivery = WebhookDelivery.objects.create(
        run=run, workflow_run_id=workflow_run_id, event=event, url=url, payload=payload
    )
    transaction.on_commit(partial(enqueue, DELIVER_WEBHOOK_TASK, delivery.pk))
    return delivery


def webhook_enqueue(*, run: AgentRun) -> WebhookDelivery:
    return delivery_enqueue(
        event=RUN_FINISHED, url=run.callback_url, payload=run_payload(run), run=run
    )


_OUTCOMES: dict[str, str] = {
    WebhookDelivery.Status.DELIVERED: "delivered",
    WebhookDelivery.Status.FAILED: "failed",
    WebhookDelivery.Status.PENDING: "retrying",
}


def webhook_attempt(delivery_id: int) -> float | None:
    """Try one delivery. Returns seconds to wait before the next try, or None when done."""
    delivery = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING
    ).first()
    if delivery is None:
        return None
    body = json.dumps(delivery.payload, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    delivery.attempts += 1
    status_code, error = None, ""
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: delivery.event,
        SIGNATURE_HEADER: sign(_signing_secret(), int(time.time()), body),
        "User-Agent": "AgentMarket-Webhooks/1",
    }
    # The id of the request that started the run (carried into the task: core/task_context.py),
    # so a receiver's logs and ours name the same request.
    if (request_id := request_id_var.get()) != "-":
        headers[REQUEST_ID_HEADER] = request_id
    refused = False
    # The guarded client resolves the host once, checks every address and connects to a
    # checked one (no DNS rebinding between check and send). A redirect is the answer, not
    # followed: it could point inside our network.
    try:
        with guarded_client(
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False
        ) as client:
            status_code = client.post(delivery.url, content=body, headers=headers).status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
        refusal = refusal_in(exc)
        if refusal is not None:
            error = refusal.message[:300]
            delivery.attempts = settings.WEBHOOK_MAX_ATTEMPTS  # an unsafe target stays unsafe
            refused = True
        else:
            error = f"{exc.__class__.__name__}: {exc}"[:300]
    delivery.last_status_code = status_code
    delivery.last_error = error
    if status_code is not None and 200 <= status_code < 300:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = timezone.now()
        delivery.last_error = ""
    elif delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        delivery.status = WebhookDelivery.Status.FAILED
    delivery.save()
    metrics.webhook_attempt(outcome="refused" if refused else _OUTCOMES[delivery.status])
    if delivery.status != WebhookDelivery.Status.PENDING:
        return None
    return float(settings.WEBHOOK_BACKOFF_BASE_SECONDS * 2 ** (delivery.attempts - 1))
