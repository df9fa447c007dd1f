from __future__ import annotations

from django.db.models import QuerySet

from agents.models import Agent, AgentRun
from core.exceptions import NotFound
from tenants.permissions import Access, Perm


def agents_list(*, access: Access, include_archived: bool = False) -> QuerySet[Agent]:
    access.require(Perm.WORKSPACE_VIEW)
    agents = Agent.objects.select_related("current_version")
    return agents if include_archived else agents.filter(archived_at__isnull=True)


def agent_get(*, access: Access, agent_id: int) -> Agent:
    agent = agents_list(access=access, include_archived=True).filter(pk=agent_id).first()
    if agent is None:
        raise NotFound("No agent with that id in this workspace.")
    return agent


def agent_run_get(*, access: Access, agent_id: int, run_id: int) -> AgentRun:
    access.require(Perm.WORKSPACE_VIEW)
    run = AgentRun.objects.select_related("version").filter(pk=run_id, agent_id=agent_id).first()
    if run is None:
        raise NotFound("No run with that id for this agent.")
    return run
