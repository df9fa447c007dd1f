"""Agents using a remote MCP server's tools: the connection is checked by the outbound guard
and the allowlist, its tools fetched with the official client and validated, the credential
encrypted; a run calls the tool and its output is data like any tool's. The remote server is a
loopback one built with the official SDK (tests/fakes/mcp_remote.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agents import services
from agents.mcp_servers.services import (
    mcp_connection_create,
    mcp_connection_delete,
    mcp_connection_refresh,
)
from agents.models import AgentRun, AllowedHost, McpServerConnection
from agents.tools.loop import tools_by_name
from core.exceptions import PermissionDenied, ValidationFailed
from tenants.models import Membership, Role
from tenants.permissions import Access
from tests.fakes import FakeOpenAI
from tests.fakes.mcp_remote import INJECTION, FakeMcpServer, fake_mcp_server
from tests.helpers.agents import run_now
from tests.helpers.personas import World, access_of, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def remote(settings: Any) -> Iterator[FakeMcpServer]:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the fake is on loopback
    with fake_mcp_server() as fake:
        yield fake


@pytest.fixture
def allowed(in_alpha: None) -> None:
    AllowedHost.objects.create(host="127.0.0.1")


def test_a_connection_fetches_and_validates_the_tools_and_keeps_the_credential_secret(
    owner_access: Access, remote: FakeMcpServer, allowed: None
) -> None:
    connection, problems = mcp_connection_create(
        access=owner_access, name="remote", url=remote.url, credential="s3cret-token-1234"
    )

    assert [t["name"] for t in connection.tools] == ["add", "whisper", "broken"]
    assert len(problems) == 1
    assert problems[0].startswith("'bad_schema': its input schema is not valid JSON Schema")
    assert remote.authorizations
    assert set(remote.authorizations) == {"Bearer s3cret-token-1234"}
    stored = McpServerConnection.objects.get()
    assert "s3cret" not in stored.credential_encrypted
    assert stored.credential_hint != "s3cret-token-1234"
    assert "1234" in stored.credential_hint
    assert stored.credential() == "s3cret-token-1234"
    assert connection.fetched_at is not None


def test_the_url_must_be_on_the_allowlist_and_pass_the_outbound_guard(
    owner_access: Access, remote: FakeMcpServer, in_alpha: None, settings: Any
) -> None:
    with pytest.raises(ValidationFailed) as not_listed:
        mcp_connection_create(access=owner_access, name="remote", url=remote.url)
    assert "allows no hosts" in not_listed.value.fields["url"][0]

    AllowedHost.objects.create(host="127.0.0.1")
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(ValidationFailed) as private:
        mcp_connection_create(access=owner_access, name="remote", url=remote.url)
    assert "private, loopback" in private.value.fields["url"][0]
    with pytest.raises(ValidationFailed) as metadata:
        mcp_connection_create(access=owner_access, name="meta", url="http://169.254.169.254/mcp")
    assert "url" in metadata.value.fields
    assert not McpServerConnection.objects.exists()
    assert remote.authorizations == []  # nothing was sent


def test_an_agent_run_calls_a_remote_tool_and_its_output_is_data(
    owner_access: Access,
    remote: FakeMcpServer,
    allowed: None,
    fake_openai: FakeOpenAI,
    fake_model: str,
) -> None:
    mcp_connection_create(access=owner_access, name="remote", url=remote.url)
    agent = services.agent_create(
        access=owner_access,
        name="Adder",
        model=fake_model,
        tools=["mcp__remote__add", "mcp__remote__whisper", "mcp__remote__broken"],
    )
    fake_openai.queue(
        tool_calls=[
            ("mcp__remote__add", {"a": 20, "b": 22}),
            ("mcp__remote__whisper", {}),
            ("mcp__remote__broken", {}),
        ]
    )
    fake_openai.queue("The sum is 42.")

    run = run_now(owner_access, agent, "Add 20 and 22")

    assert run.status == AgentRun.Status.SUCCEEDED
    assert run.output == "The sum is 42."
    steps = [(s["tool"], s["output"], s["ok"]) for s in run.tool_steps]
    assert steps == [
        ("mcp__remote__add", "42", True),
        ("mcp__remote__whisper", INJECTION, True),
        (
            "mcp__remote__broken",
            "The MCP tool 'broken' reported an error: the backend is down",
            False,
        ),
    ]
    # The injected text went back to the model as a tool message, and it changed nothing:
    # the tools offered on the next call are the same three.
    second = fake_openai.requests[-1].body
    assert [t["function"]["name"] for t in second["tools"]] == [
        "mcp__remote__add",
        "mcp__remote__whisper",
        "mcp__remote__broken",
    ]
    assert any(m.get("content") == INJECTION and m["role"] == "tool" for m in second["messages"])


def test_unknown_or_left_out_mcp_tools_cannot_be_given_to_an_agent(
    owner_access: Access, remote: FakeMcpServer, allowed: None
) -> None:
    mcp_connection_create(access=owner_access, name="remote", url=remote.url)
    for name in ("mcp__remote__bad_schema", "mcp__remote__nope", "mcp__other__add"):
        with pytest.raises(ValidationFailed) as refused:
            tools_by_name([name])
        assert name in refused.value.message
    assert set(tools_by_name(["calculator", "mcp__remote__add"])) == {
        "calculator",
        "mcp__remote__add",
    }


def test_refresh_and_delete_and_members_and_viewers_cannot_manage_connections(
    world: World, owner_access: Access, remote: FakeMcpServer, allowed: None
) -> None:
    connection, _ = mcp_connection_create(access=owner_access, name="remote", url=remote.url)
    McpServerConnection.objects.update(tools=[])
    problems = mcp_connection_refresh(access=owner_access, connection_id=connection.pk)
    assert len(problems) == 1
    assert len(McpServerConnection.objects.get().tools) == 3
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    for user in (world.member, viewer):
        with pytest.raises(PermissionDenied):
            mcp_connection_create(
                access=access_of(user, world.workspace_a), name="mine", url=remote.url
            )
        with pytest.raises(PermissionDenied):
            mcp_connection_delete(
                access=access_of(user, world.workspace_a), connection_id=connection.pk
            )
    mcp_connection_delete(access=owner_access, connection_id=connection.pk)
    assert not McpServerConnection.objects.exists()
