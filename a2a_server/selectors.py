"""Who is calling and what they reach: an exposed agent of the API key's own workspace.
Every function here runs in a worker thread (the A2A app is async; Django's ORM is not)."""

from __future__ import annotations

from dataclasses import dataclass

from agents.models import Agent, AgentRun
from core.exceptions import NotFound
from tenants.models import ApiKey
from tenants.permissions import Access, Perm
from tenants.schemas import activate, activate_public
from tenants.selectors import access_for_api_key
from tenants.services import api_key_authenticate


class Unauthenticated(Exception):
    """No key, or a key that is unknown, revoked or expired: HTTP 401."""


@dataclass(frozen=True)
class Target:
    """An agent reachable over A2A, and the access its caller has."""

    access: Access
    agent_id: int
    name: str
    description: str
    category: str


def bearer_secret(authorization: str, api_key_header: str) -> str:
    """`Authorization: Bearer amk_…`, or `X-Api-Key: amk_…` as the REST API accepts."""
    parts = authorization.split()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1]
    return api_key_header.strip()


def key_access(secret: str) -> Access:
    if not secret:
        raise Unauthenticated("Send the workspace API key as 'Authorization: Bearer <key>'.")
    try:
        key: ApiKey = api_key_authenticate(secret=secret)
    except NotFound as exc:
        raise Unauthenticated(exc.message) from exc
    return access_for_api_key(api_key=key)


def exposed_agent(*, secret: str, workspace_slug: str, agent_id: int) -> Target:
    """The exposed, active agent `agent_id` of workspace `workspace_slug`, for a key of that
    workspace with the run scope. Another workspace's key, an agent not exposed and one that
    does not exist are the same NotFound: nothing says what another workspace holds."""
    access = key_access(secret)
    access.require(Perm.RUN)
    if access.workspace.slug != workspace_slug:
        raise NotFound("No A2A agent at this address for this API key.")
    activate(access.workspace)
    try:
        agent = Agent.objects.filter(
            pk=agent_id, a2a_exposed=True, archived_at__isnull=True
        ).first()
    finally:
        activate_public()
    if agent is None:
        raise NotFound("No A2A agent at this address for this API key.")
    return Target(
        access=access,
        agent_id=agent.pk,
        name=agent.name,
        description=agent.description,
        category=agent.category,
    )


def run_of(target: Target, run_id: int) -> AgentRun | None:
    activate(target.access.workspace)
    try:
        return AgentRun.objects.filter(pk=run_id, agent_id=target.agent_id).first()
    finally:
        activate_public()
