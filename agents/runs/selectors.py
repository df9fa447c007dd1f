"""Reads on agent runs (the API's and "Try it"'s), for the runs pages: who started each run,
which provider and model answered it (from the usage ledger), its tool steps, tokens and cost.

Which provider answered is read from the ledger rather than stored on the run: the gateway
writes one row per call, with the target that answered, so the run page shows what was paid
for, including a fallback to a later target of an alias."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from accounts.models import User
from agents.models import AgentRun, ProviderKind, UsageRecord
from core.exceptions import NotFound
from core.formatting import cost_text, duration_text, elapsed_ms
from tenants.permissions import Access, Perm

PAGE_SIZE = 50
PLACEHOLDER_NOTE = "Placeholder answer — no model provider configured"


@dataclass(frozen=True)
class AnsweredBy:
    """The provider and model that answered a call (the last successful one of a run)."""

    kind: str
    model: str

    @property
    def provider(self) -> str:
        return ProviderKind(self.kind).label if self.kind in ProviderKind.values else self.kind

    @property
    def placeholder(self) -> bool:
        """The offline model answered: deterministic stand-in text, not a real model's."""
        return self.kind == ProviderKind.OFFLINE

    @property
    def note(self) -> str:
        return PLACEHOLDER_NOTE if self.placeholder else ""


def answered_by_runs(*, run_ids: list[int]) -> dict[int, AnsweredBy]:
    """For each agent run, the target of its last answered (or cache-served) call."""
    if not run_ids:
        return {}
    rows = (
        UsageRecord.objects.filter(
            run_id__in=run_ids,
            outcome__in=(UsageRecord.Outcome.OK, UsageRecord.Outcome.CACHED),
        )
        .order_by("run_id", "-id")
        .distinct("run_id")
        .values_list("run_id", "kind", "model")
    )
    return {run_id: AnsweredBy(kind, model) for run_id, kind, model in rows if run_id is not None}


@dataclass
class ToolStepView:
    tool: str
    ok: bool
    arguments: str
    output: str


@dataclass
class AgentRunView:
    run: AgentRun
    answered_by: AnsweredBy | None
    started_by: str
    steps: list[ToolStepView] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.run.input_tokens + self.run.output_tokens

    @property
    def cost(self) -> str:
        return cost_text(self.run.cost_usd)

    @property
    def duration(self) -> str:
        run = self.run
        if run.started_at is None or run.finished_at is None:
            return "—"
        return duration_text(elapsed_ms(run.started_at, run.finished_at))

    @property
    def source(self) -> str:
        return "API" if self.run.api_key_prefix else "Try it"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _steps(run: AgentRun) -> list[ToolStepView]:
    return [
        ToolStepView(
            tool=str(step.get("tool", "")),
            ok=bool(step.get("ok", True)),
            arguments=_text(step.get("arguments", {})),
            output=_text(step.get("output", "")),
        )
        for step in (run.tool_steps or [])
        if isinstance(step, dict)
    ]


def _views(runs: list[AgentRun]) -> list[AgentRunView]:
    answered = answered_by_runs(run_ids=[r.pk for r in runs])
    user_ids = {r.created_by_id for r in runs if r.created_by_id and not r.api_key_prefix}
    emails = dict(User.objects.filter(pk__in=user_ids).values_list("pk", "email"))
    views = []
    for run in runs:
        if run.api_key_prefix:
            started_by = f"API key {run.api_key_prefix}…"
        else:
            started_by = emails.get(run.created_by_id or 0, "a former member")
        views.append(AgentRunView(run, answered.get(run.pk), started_by, _steps(run)))
    return views


def agent_runs(*, access: Access, agent_id: int | None = None) -> QuerySet[AgentRun]:
    """Agent runs of the workspace (from the API and "Try it"), newest first."""
    access.require(Perm.WORKSPACE_VIEW)
    runs = AgentRun.objects.select_related("agent", "version").defer("output_data")
    if agent_id is not None:
        runs = runs.filter(agent_id=agent_id)
    return runs.order_by("-created_at", "-id")


def agent_runs_page(
    *, access: Access, page: str | int | None, agent_id: int | None = None
) -> tuple[Page[AgentRun], list[AgentRunView]]:
    result = Paginator(agent_runs(access=access, agent_id=agent_id), PAGE_SIZE).get_page(page)
    return result, _views(list(result.object_list))


def agent_run_view(*, access: Access, run_id: int) -> AgentRunView:
    run = agent_runs(access=access).filter(pk=run_id).first()
    if run is None:
        raise NotFound("No agent run with that id in this workspace.")
    return _views([run])[0]
