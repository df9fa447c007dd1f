"""Every A2A call resolves its key and agent first: a fixed, small number of queries."""

from __future__ import annotations

from typing import Any

from a2a_server import selectors
from tests.helpers.a2a import make_agent, make_key
from tests.helpers.personas import World


def test_resolving_an_exposed_agent_takes_a_fixed_number_of_queries(
    world: World, django_assert_num_queries: Any
) -> None:
    agent = make_agent(world)
    secret = make_key(world)
    selectors.exposed_agent(secret=secret, workspace_slug="alpha", agent_id=agent.pk)  # warm
    # The key with its workspace (schema-qualified: no schema switch before it), the switch to
    # the workspace and the agent (last use written once a minute at most: not after warm-up).
    with django_assert_num_queries(3):
        target = selectors.exposed_agent(secret=secret, workspace_slug="alpha", agent_id=agent.pk)
    assert target.agent_id == agent.pk
