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

from a2a_server.selectors import Target

SCHEME = "workspaceApiKey"


def agent_path(workspace_slug: str, agent_id: int) -> str:
    return f"/a2a/w/{workspace_slug}/agents/{agent_id}/"


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
        security_schemes={
            SCHEME: SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="bearer",
                    bearer_format="amk_<prefix>_<secret>",
                    description="An API key of the agent's workspace with the run scope.",
                )
            )
        },
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
