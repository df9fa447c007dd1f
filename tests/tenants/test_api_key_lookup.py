"""An API key is read with its workspace by one schema-qualified statement compiled once
(tenants.selectors.api_key_by_hash, decision 128): nothing of it is kept between requests, so
a revoked key, an expired one or one of a workspace scheduled for deletion is refused on the
very next call."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import Agent
from agents.services import agent_create
from tenants import services
from tenants.models import ApiKey
from tenants.schemas import current_schema
from tenants.selectors import api_key_by_hash
from tests.helpers.personas import World, access_of, key_client

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/agents/"


def _key(world: World) -> tuple[ApiKey, str]:
    key, secret = services.api_key_create(
        access=access_of(world.owner, world.workspace_a), name="lookup", scopes=["run"]
    )
    return key, secret


def test_the_key_is_found_with_its_workspace_from_any_schema(world: World) -> None:
    key, _ = _key(world)
    with schema_context(world.workspace_b.schema_name):
        found = api_key_by_hash(key_hash=key.key_hash)
        # The lookup did not move the connection: the next query still runs in bravo.
        assert current_schema() == world.workspace_b.schema_name
        assert Agent.objects.count() == 0
    assert found is not None
    assert (found.pk, found.prefix, found.scopes) == (key.pk, key.prefix, ["run"])
    assert found.created_at == key.created_at
    assert found.workspace.pk == world.workspace_a.pk
    assert found.workspace.schema_name == world.workspace_a.schema_name
    assert found.workspace.name == world.workspace_a.name
    assert api_key_by_hash(key_hash="0" * 64) is None


def test_the_lookup_sets_no_search_path(world: World, django_assert_num_queries: Any) -> None:
    key, _ = _key(world)
    with django_assert_num_queries(1) as captured:
        api_key_by_hash(key_hash=key.key_hash)
    assert "search_path" not in captured.captured_queries[0]["sql"]
    assert '"public"."tenants_apikey"' in captured.captured_queries[0]["sql"]


def test_a_revoked_key_is_refused_on_the_very_next_call(world: World) -> None:
    api = key_client(world, ["workspace.view"])
    assert api.get(AGENTS).status_code == 200
    key = ApiKey.objects.get(name="ci", workspace=world.workspace_a)

    services.api_key_revoke(access=access_of(world.owner, world.workspace_a), key_id=key.pk)

    refused = api.get(AGENTS)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]["message"]


def test_a_key_changed_outside_the_services_is_refused_at_once(world: World) -> None:
    """The admin, a shell or a bulk update: nothing to invalidate, the row is read each time."""
    api = key_client(world, ["workspace.view"])
    assert api.get(AGENTS).status_code == 200
    ApiKey.objects.filter(name="ci").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api.get(AGENTS).status_code == 401


def test_a_key_of_a_workspace_scheduled_for_deletion_is_refused_at_once(world: World) -> None:
    api = key_client(world, ["workspace.view"])
    with schema_context(world.workspace_a.schema_name):
        agent_create(
            access=access_of(world.owner, world.workspace_a), name="A", model="offline:demo"
        )
    assert api.get(AGENTS).json()["count"] == 1
    type(world.workspace_a).objects.filter(pk=world.workspace_a.pk).update(
        deletion_requested_at=timezone.now()
    )
    assert api.get(AGENTS).status_code == 401
    assert connection.schema_name == "public"
