"""Executing an agent run (called by the Celery task, in the workspace's schema)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from agents.execution import answer_with_version
from agents.gateway import GatewayError, UsageContext
from agents.models import AgentRun
from agents.providers.base import Message
from agents.webhooks import webhook_enqueue
from core.exceptions import ApplicationError
from marketplace import telemetry


def _claim(run_id: int) -> AgentRun | None:
    """Move a queued run to running. A redelivered task finds it claimed and does nothing."""
    with transaction.atomic():
        run = (
            AgentRun.objects.select_for_update().select_related("version").filter(pk=run_id).first()
        )
        if run is None or run.status != AgentRun.Status.QUEUED:
            return None
        run.status = AgentRun.Status.RUNNING
        run.started_at = timezone.now()
        run.save(update_fields=["status", "started_at"])
        return run


def execute_run(run_id: int) -> str | None:
    run = _claim(run_id)
    if run is None:
        return None
    version = run.version
    try:
        answer = answer_with_version(
            version,
            messages=[Message(role="user", content=run.input)],
            context=UsageContext(
                agent_id=run.agent_id,
                run_id=run.pk,
                run_cap_usd=version.max_cost_per_run_usd,
                user_id=run.created_by_id,
            ),
        )
    except (GatewayError, ApplicationError) as exc:
        _finish(run, status=AgentRun.Status.FAILED, error=exc.message)
        return run.status
    run.tool_steps = answer.tool_steps
    run.input_tokens = answer.usage.tokens_in
    run.output_tokens = answer.usage.output_tokens
    run.cost_usd = answer.cost_usd
    run.cache_hit = answer.cache_hit
    run.cache_entry_id = answer.cache_entry_id
    run.output_data = answer.data
    status = AgentRun.Status.SUCCEEDED if answer.ok else AgentRun.Status.FAILED
    _finish(run, status=status, output=answer.text if answer.ok else "", error=answer.error)
    return run.status


def _finish(run: AgentRun, *, status: str, output: str = "", error: str = "") -> None:
    run.status = status
    run.output = output
    run.error = error
    run.finished_at = timezone.now()
    fields = [
        "status",
        "output",
        "output_data",
        "error",
        "tool_steps",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "cache_hit",
        "cache_entry_id",
        "finished_at",
    ]
    with transaction.atomic():
        run.save(update_fields=fields)
        if run.callback_url:
            webhook_enqueue(run=run)
    telemetry.agent_run_finished(run.pk)  # an installed listing's statistics; never raises
