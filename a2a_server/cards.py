"""The A2A agent card of an exposed agent (spec 1.0, as `a2a-sdk` implements it)."""

from __future__ import annotations

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol

from a2a_server.selectors import ListingInfo, Target

SCHEME = "workspaceApiKey"


def agent_path(workspace_slug: str, agent_id: int) -> str:
    return f"/a2a/w/{workspace_slug}/agents/{agent_id}/"


def listing_path(listing_slug: str) -> str:
    return f"/a2a/listings/{listing_slug}/"


def _bearer(description: str) -> dict[str, SecurityScheme]:
    return {
        SCHEME: SecurityScheme(
            http_auth_security_scheme=HTTPAuthSecurityScheme(
                scheme="bearer", bearer_format="amk_<prefix>_<secret>", description=description
            )
        )
    }


def listing_card(listing: ListingInfo, *, base_url: str) -> AgentCard:
    """A public agent listing's card (public metadata, like its marketplace page). Its
    endpoint runs the caller's own installed copy: the key is the buyer's workspace's."""
    return AgentCard(
        name=listing.title,
        description=listing.summary,
        version="1",
        provider=AgentProvider(organization=listing.publisher, url=base_url),
        documentation_url=f"{base_url}/marketplace/l/{listing.slug}/",
        supported_interfaces=[
            AgentInterface(
                url=base_url + listing_path(listing.slug),
                protocol_binding=TransportProtocol.JSONRPC.value,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        security_schemes=_bearer(
            "An API key (run scope) of a workspace that installed this listing: the call runs "
            "that workspace's installed copy. Install it from the documentation URL."
        ),
        security_requirements=[SecurityRequirement(schemes={SCHEME: StringList(list=[])})],
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id="answer",
                name=listing.title,
                description=listing.summary,
                tags=[listing.category],
                examples=listing.examples,
                input_modes=["text/plain"],
                output_modes=["text/plain"],
            )
        ],
    )


def agent_card(target: Target, *, base_url: str) -> AgentCard:
    """Name, description and the one skill of the agent (answering a text message with its
    current version), the JSON-RPC endpoint, and the workspace API key as bearer."""
    workspace = target.access.workspace
    summary = target.description or f"The {target.name} agent of {workspace.name}."
    return AgentCard(
        name=target.name,
        description=summary,
        version="1",
        provider=AgentProvider(organization=workspace.name, url=base_url),
        supported_interfaces=[
            AgentInterface(
                url=base_url + agent_path(workspace.slug, target.agent_id),
                protocol_binding=TransportProtocol.JSONRPC.value,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        security_schemes=_bearer("An API key of the agent's workspace with the run scope."),
        security_requirements=[SecurityRequirement(schemes={SCHEME: StringList(list=[])})],
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id="answer",
                name=target.name,
                description=summary,
                tags=[target.category] if target.category else ["agent"],
                input_modes=["text/plain"],
                output_modes=["text/plain"],
            )
        ],
    )
