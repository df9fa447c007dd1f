"""Finding 8: failed API-key authentication is throttled per client address, so keys cannot be
guessed at speed; a working key from another address is not affected."""

from __future__ import annotations

import itertools

import pytest
from rest_framework.test import APIClient

from tests.helpers.personas import World, key_client

pytestmark = pytest.mark.django_db

MEMBERS = "/api/v1/members/"
RATES = {"api_key": "600/min", "user": "300/min", "auth_failure": "3/min"}
_addresses = itertools.count(1)


@pytest.fixture
def three_failures_a_minute(settings) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": RATES}


def fresh_address() -> str:
    # Counts live in Redis across tests: each test guesses from an address of its own.
    n = next(_addresses)
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def guess(address: str, authorization: str = "Bearer amk_deadbeef_wrong"):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)
    return client.get(MEMBERS, REMOTE_ADDR=address)


def test_guessing_keys_is_answered_429_after_the_allowed_failures(
    world: World, three_failures_a_minute: None
) -> None:
    address = fresh_address()

    answers = [guess(address).status_code for _ in range(3)]
    blocked = guess(address)

    assert answers == [401, 401, 401]
    assert blocked.status_code == 429
    assert 1 <= int(blocked["Retry-After"]) <= 60
    assert blocked.json()["error"]["code"] == "throttled"


def test_malformed_headers_count_as_failures(world: World, three_failures_a_minute: None) -> None:
    address = fresh_address()

    for _ in range(3):
        assert guess(address, "Bearer a b c").status_code == 401

    assert guess(address).status_code == 429


def test_a_blocked_address_cannot_use_even_a_real_key(
    world: World, three_failures_a_minute: None
) -> None:
    address = fresh_address()
    good = key_client(world, ["members.view"])
    for _ in range(3):
        guess(address)

    assert good.get(MEMBERS, REMOTE_ADDR=address).status_code == 429


def test_other_addresses_and_successes_are_not_counted(
    world: World, three_failures_a_minute: None
) -> None:
    attacker, integrator = fresh_address(), fresh_address()
    good = key_client(world, ["members.view"])
    for _ in range(3):
        guess(attacker)

    answers = [good.get(MEMBERS, REMOTE_ADDR=integrator).status_code for _ in range(5)]

    assert answers == [200] * 5
    assert guess(integrator).status_code == 401
