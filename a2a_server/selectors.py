"""Who is calling and what they reach: an exposed agent of the API key's own workspace.
Every function here runs in a worker thread (the A2A app is async; Django's ORM is not)."""

from __future__ import annotations

from dataclasses import dataclass

from agents.models import Agent, AgentRun
from core.exceptions import NotFound
from marketplace import selectors as marketplace_selectors
from marketplace.models import Install, Listing
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


@dataclass(frozen=True)
class ListingInfo:
    """What a listing's card shows: public metadata of the marketplace page."""

    slug: str
    title: str
    summary: str
    category: str
    publisher: str
    examples: list[str]


def public_agent_listing(*, slug: str) -> ListingInfo:
    """A public agent listing (workflow templates have no A2A card). NotFound otherwise."""
    listing = (
        marketplace_selectors.public_listings()
        .filter(slug=slug, kind=Listing.Kind.AGENT)
        .select_related("publisher", "category", "current_version")
        .defer("search_vector", "embedding")
        .first()
    )
    if listing is None:
        raise NotFound("No public agent listing with that slug.")
    examples = listing.current_version.example_inputs if listing.current_version else []
    return ListingInfo(
        slug=listing.slug,
        title=listing.title,
        summary=listing.summary,
        category=listing.category.name,
        publisher=listing.publisher.display_name,
        examples=[str(example) for example in examples if isinstance(example, str)][:5],
    )


def installed_listing_agent(*, secret: str, listing_slug: str) -> Target:
    """The copy of listing `listing_slug` that the key's own workspace installed: a listing's
    A2A endpoint runs the caller's installed copy (billed, budgeted and counted as that
    workspace's run). NotFound, saying so, when that workspace has not installed it."""
    access = key_access(secret)
    access.require(Perm.RUN)
    info = public_agent_listing(slug=listing_slug)
    install = (
        Install.objects.filter(
            listing__slug=listing_slug,
            workspace=access.workspace,
            object_kind="agent",
            uninstalled_at__isnull=True,
        )
        .order_by("-installed_at")
        .first()
    )
    agent = None
    if install is not None:
        activate(access.workspace)
        try:
            agent = Agent.objects.filter(pk=install.object_id, archived_at__isnull=True).first()
        finally:
            activate_public()
    if agent is None:
        raise NotFound(
            f"This API key's workspace has not installed {info.title!r}: install it from "
            f"/marketplace/l/{info.slug}/ first."
        )
    return Target(
        access=access,
        agent_id=agent.pk,
        name=info.title,
        description=info.summary,
        category=info.category,
    )


def run_of(target: Target, run_id: int) -> AgentRun | None:
    activate(target.access.workspace)
    try:
        return (
            AgentRun.objects.select_related("conversation")
            .filter(pk=run_id, agent_id=target.agent_id)
            .first()
        )
    finally:
        activate_public()
