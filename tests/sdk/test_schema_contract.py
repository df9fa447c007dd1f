"""The SDK cannot drift from the API silently: every operation in its table
(`agentmarket.endpoints.ENDPOINTS`, the only place its requests are built from) must be in the
OpenAPI document with that method and success status, every query parameter and body field it
sends must be declared there, and every field its models read must be in the answer's schema."""

from __future__ import annotations

from typing import Any

import pytest
from agentmarket import models
from agentmarket.endpoints import ENDPOINTS, Endpoint
from rest_framework.test import APIClient

from tests.helpers.personas import World

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def document(django_db_setup: None, django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return resolve(document, schema["allOf"][0])
    return schema


def operation(document: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    assert endpoint.path in document["paths"], f"{endpoint.path} is not in the API"
    operations = document["paths"][endpoint.path]
    assert endpoint.method.lower() in operations, f"{endpoint.method} {endpoint.path} is not"
    return operations[endpoint.method.lower()]


def missing_fields(
    document: dict[str, Any], schema: dict[str, Any], model: type[models.Model]
) -> list[str]:
    properties = resolve(document, schema).get("properties", {})
    missing = [f"{model.__name__}.{name}" for name in model.api_fields() if name not in properties]
    for (owner, name), nested in models.NESTED.items():
        if owner == model.__name__ and name in properties:
            items = resolve(document, properties[name]).get("items", {})
            missing += missing_fields(document, items, nested)
    return missing


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_each_operation_the_sdk_calls_is_in_the_schema_with_what_it_sends_and_reads(
    world: World, document: dict[str, Any], name: str
) -> None:
    endpoint = ENDPOINTS[name]
    op = operation(document, endpoint)

    responses = op["responses"]
    assert str(endpoint.status) in responses, (name, sorted(responses))
    parameters = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
    assert set(endpoint.query) <= parameters, (name, set(endpoint.query) - parameters)
    if endpoint.body:
        request = resolve(document, op["requestBody"]["content"]["application/json"]["schema"])
        declared = set(request["properties"])
        assert set(endpoint.body) <= declared, (name, set(endpoint.body) - declared)
    if endpoint.model is None:
        return
    schema = responses[str(endpoint.status)]["content"]["application/json"]["schema"]
    if endpoint.paginated:
        page = resolve(document, schema)
        assert {"count", "next", "results"} <= set(page["properties"])
        schema = resolve(document, page["properties"]["results"])["items"]
    assert missing_fields(document, schema, endpoint.model) == []


def test_the_error_statuses_the_sdk_maps_are_the_ones_the_api_documents(
    world: World, document: dict[str, Any]
) -> None:
    run_start = operation(document, ENDPOINTS["agent_run_start"])
    assert {"400", "401", "403", "404", "429", "503"} <= set(run_start["responses"])
    envelope = resolve(
        document, run_start["responses"]["403"]["content"]["application/json"]["schema"]
    )
    error = resolve(document, envelope["properties"]["error"])
    assert {"code", "message", "fields"} <= set(error["properties"])
