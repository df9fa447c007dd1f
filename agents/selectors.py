from __future__ import annotations

from django.db.models import QuerySet

from agents.models import Agent, AgentRun, Conversation
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


def agent_choice_label(agent: Agent) -> str:
    """How a picker shows an agent: its name plus what tells it apart from an agent of the
    same name (only an archived one can share it): the id and the model."""
    model = agent.current_version.model if agent.current_version is not None else "no version"
    archived = ", archived" if agent.archived_at is not None else ""
    return f"{agent.name} (#{agent.pk} · {model}{archived})"


def agent_choices(*, access: Access, keep: set[int] | None = None) -> list[tuple[int, str]]:
    """(id, label) of every active agent, for pickers, plus the agents in `keep` that are
    archived (what a step already holds stays visible, marked, rather than dropped)."""
    agents = list(agents_list(access=access).order_by("name", "pk"))
    listed = {a.pk for a in agents}
    missing = (keep or set()) - listed
    if missing:
        agents += list(
            agents_list(access=access, include_archived=True)
            .filter(pk__in=missing)
            .order_by("name", "pk")
        )
    return [(a.pk, agent_choice_label(a)) for a in agents]


def agent_summary(*, access: Access) -> dict[str, int]:
    """The dashboard's agents card: active agents and conversations in this workspace."""
    access.require(Perm.WORKSPACE_VIEW)
    return {
        "agents": Agent.objects.filter(archived_at__isnull=True).count(),
        "conversations": Conversation.objects.count(),
    }
