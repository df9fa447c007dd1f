"""The completion webhook of a workflow run: one signed POST to the run's `callback_url`.

Signing, retries with backoff and the delivery log are the agents' (agents/webhooks.py): the
body is signed with the workspace's webhook secret as `X-AgentMarket-Signature:
t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, and `X-AgentMarket-Event` names
the event.
"""

from __future__ import annotations

from typing import Any

from agents.models import WebhookDelivery
from agents.webhooks import delivery_enqueue
from workflows.models import WorkflowRun

RUN_FINISHED = "workflow_run.finished"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def run_payload(run: WorkflowRun) -> dict[str, Any]:
    return {
        "event": RUN_FINISHED,
        "run": {
            "id": run.pk,
            "workflow": {"id": run.workflow_id, "name": run.workflow.name},
            "version": run.version.number,
            "trigger": run.trigger,
            "status": run.status,
            "inputs": run.inputs,
            "output": run.output,
            "error": run.error,
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cost_usd": str(run.cost_usd),
            "created_at": _iso(run.created_at),
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
        },
    }


def run_finished_webhook(run: WorkflowRun) -> WebhookDelivery | None:
    """Queue the signed completion POST of a finished run that has a callback URL.

    Called by the engine inside the transaction that finishes the run, so the delivery row
    commits with the final state and the POST is sent only after that commit. Calling it twice
    for the same ending (a redelivered finishing task) queues one delivery; a run that is
    resumed and ends again is a new ending and is posted again.
    """
    if not run.callback_url or not run.finished:
        return None
    payload = run_payload(run)
    existing = WebhookDelivery.objects.filter(
        workflow_run_id=run.pk,
        event=RUN_FINISHED,
        payload__run__finished_at=payload["run"]["finished_at"],
    ).first()
    if existing is not None:
        return existing
    return delivery_enqueue(
        event=RUN_FINISHED, url=run.callback_url, payload=payload, workflow_run_id=run.pk
    )
