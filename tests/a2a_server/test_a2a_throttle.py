"""Guessing keys on the A2A endpoints is throttled like the REST API and MCP: failed keys count
against the caller's address (`API_AUTH_FAILURE_RATE`), and once they are used up even a good
key from that address gets 429 with Retry-After until the window passes."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.helpers.a2a import CARD, agent_url, make_agent, make_key
from tests.helpers.personas import World


def test_guessing_keys_on_an_agent_card_is_throttled_like_the_api(
    committed_world: World, asgi_live_server: Any, settings: Any
) -> None:
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth_failure": "2/min"}
    # Behind one proxy, from an address of its own (failure counts live in Redis across tests).
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": rates,
        "NUM_PROXIES": 1,
    }
    agent = make_agent(committed_world)
    secret = make_key(committed_world)
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, agent.pk) + CARD
    address = f"10.98.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"

    def get(key: str | None) -> httpx.Response:
        headers = {"X-Forwarded-For": address}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.get(url, headers=headers, timeout=30)

    assert get(None).status_code == 401  # no key at all is not a guess
    statuses = [get("amk_nope_nope").status_code for _ in range(3)]
    blocked = get(secret)

    assert statuses == [401, 401, 429]
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert "Too many failed API-key attempts" in blocked.json()["error"]["message"]
