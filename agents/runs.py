"""Executing an agent run (called by the Celery task, in the workspace's schema)."""

from __future__ import annotations

import re

from django.db import transaction
from django.utils import timezone

from agents.gateway import GatewayError, UsageContext
from agents.models import AgentRun
from agents.providers.base import Message
from agents.toolloop import run_tool_loop
from agents.webhooks import webhook_enqueue
from core.exceptions import ApplicationError


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
        loop = run_tool_loop(
            model=version.model,
            messages=[Message(role="user", content=run.input)],
            tool_names=list(version.tools),
            system=version.system_prompt,
            max_tool_calls=version.max_tool_calls,
            temperature=version.temperature,
            max_tokens=version.max_tokens,
            context=UsageContext(
                agent_id=run.agent_id, run_id=run.pk, run_cap_usd=version.max_cost_per_run_usd
            ),
        )
    except (GatewayError, ApplicationError) as exc:
        _finish(run, status=AgentRun.Status.FAILED, error=exc.message)
        return run.status
    output, error = loop.text, ""
    status = AgentRun.Status.SUCCEEDED
    for pattern in version.blocked_patterns:
        if re.search(pattern, output, flags=re.IGNORECASE):
            output, error = "", f"The answer matched a blocked pattern ({pattern!r})."
            status = AgentRun.Status.FAILED
            break
    cap = version.max_cost_per_run_usd
    if status == AgentRun.Status.SUCCEEDED and cap is not None and loop.cost_usd > cap:
        error = f"The run cost ${loop.cost_usd} which is over its cap of ${cap}."
        status = AgentRun.Status.FAILED
    run.tool_steps = [
        {"tool": s.call.name, "arguments": s.call.arguments, "output": s.output, "ok": s.ok}
        for s in loop.steps
    ]
    run.input_tokens = loop.usage.input_tokens + loop.usage.cached_input_tokens
    run.output_tokens = loop.usage.output_tokens
    run.cost_usd = loop.cost_usd
    _finish(run, status=status, output=output, error=error)
    return run.status


def _finish(run: AgentRun, *, status: str, output: str = "", error: str = "") -> None:
    run.status = status
    run.output = output
    run.error = error
    run.finished_at = timezone.now()
    fields = [
        "status",
        "output",
        "error",
        "tool_steps",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "finished_at",
    ]
    with transaction.atomic():
        run.save(update_fields=fields)
        if run.callback_url:
            webhook_enqueue(run=run)
