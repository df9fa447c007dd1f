"""Writes of the A2A server: the owner's choice to expose an agent, and runs started or
canceled through A2A (through the agents app's own services: ledger, budgets, quotas and
audit apply as for any run)."""

from __future__ import annotations

from django.db import transaction

from a2a_server.selectors import Target
from agents import services as agent_services
from agents.models import Agent, AgentRun
from core.exceptions import NotFound
from tenants import audit
from tenants.permissions import Access, Perm
from tenants.schemas import activate, activate_public


@transaction.atomic
def agent_a2a_expose_set(*, access: Access, agent_id: int, exposed: bool) -> Agent:
    """Owners and admins (workspace.update) choose which agents answer over A2A."""
    access.require(Perm.WORKSPACE_UPDATE)
    agent = Agent.objects.select_for_update().filter(pk=agent_id).first()
    if agent is None:
        raise NotFound("No agent with that id in this workspace.")
    if agent.a2a_exposed != exposed:
        agent.a2a_exposed = exposed
        agent.save(update_fields=["a2a_exposed", "updated_at"])
        audit.record_for(
            access,
            action=audit.Action.AGENT_UPDATED,
            target=agent,
            metadata={"a2a_exposed": exposed},
        )
    return agent


def a2a_run_start(*, target: Target, text: str) -> AgentRun:
    activate(target.access.workspace)
    try:
        return agent_services.agent_run_start(
            access=target.access, agent_id=target.agent_id, input=text
        )
    finally:
        activate_public()


def a2a_run_cancel(*, target: Target, run_id: int) -> AgentRun:
    activate(target.access.workspace)
    try:
        return agent_services.agent_run_cancel(
            access=target.access, agent_id=target.agent_id, run_id=run_id
        )
    finally:
        activate_public()
