"""The published OpenAPI document and the docs page: what an integrator generates a client from
must describe the API that actually answers, and the docs must work without any CDN."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from rest_framework.test import APIClient

from accounts.models import User
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db

SCHEMA = "/api/schema/"
DOCS = "/api/docs/"
PAGINATED_LISTS = [
    "/api/v1/members/",
    "/api/v1/invitations/",
    "/api/v1/api-keys/",
    "/api/v1/audit-events/",
]


def openapi(client: APIClient) -> dict[str, Any]:
    response = client.get(SCHEMA, {"format": "json"})
    assert response.status_code == 200
    return response.json()


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


def test_schema_as_json_lists_the_workspace_endpoints(world: World) -> None:
    response = APIClient().get(SCHEMA, {"format": "json"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Agent Market API"
    paths = set(document["paths"])
    assert {
        "/api/v1/members/",
        "/api/v1/api-keys/",
        "/api/v1/workspaces/",
        "/api/v1/invitations/",
        "/api/v1/audit-events/",
    } <= paths


def test_schema_negotiated_by_accept_header(world: World) -> None:
    response = APIClient().get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    assert "/api/v1/members/" in response.json()["paths"]
    assert "/api/v1/api-keys/" in response.json()["paths"]


def test_schema_documents_bearer_auth_and_workspace_header(world: World) -> None:
    document = openapi(APIClient())

    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKey"]["type"] == "http"
    assert schemes["ApiKey"]["scheme"] == "bearer"
    members = document["paths"]["/api/v1/members/"]["get"]
    assert {"ApiKey": []} in members["security"]
    headers = {p["name"] for p in members["parameters"] if p["in"] == "header"}
    assert "X-Workspace" in headers


def test_schema_shows_the_secret_only_on_key_creation(world: World) -> None:
    document = openapi(APIClient())

    created = document["paths"]["/api/v1/api-keys/"]["post"]["responses"]["201"]
    created_schema = resolve(document, created["content"]["application/json"]["schema"])
    listed = document["paths"]["/api/v1/api-keys/"]["get"]["responses"]["200"]
    listed_schema = resolve(document, listed["content"]["application/json"]["schema"])
    item = resolve(
        document, listed_schema.get("items") or listed_schema["properties"]["results"]["items"]
    )

    assert "key" in created_schema["properties"]
    assert "key" not in item["properties"]


@pytest.mark.parametrize("path", PAGINATED_LISTS)
def test_schema_describes_list_responses_as_the_api_returns_them(owner: User, path: str) -> None:
    # Given what the endpoint really answers
    client = APIClient()
    client.force_login(owner)
    actual = client.get(path, HTTP_X_WORKSPACE="alpha")
    assert actual.status_code == 200
    assert isinstance(actual.json(), dict)
    assert {"count", "results"} <= set(actual.json())

    # When a client generator reads the documented 200 response
    document = openapi(client)
    operation = document["paths"][path]["get"]
    documented = resolve(
        document, operation["responses"]["200"]["content"]["application/json"]["schema"]
    )

    # Then it is the same paginated object, with its limit/offset parameters
    assert documented.get("type") == "object", documented
    assert {"count", "results"} <= set(documented.get("properties", {}))
    query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    assert {"limit", "offset"} <= query


def test_docs_page_is_served_without_any_cdn(world: World) -> None:
    response = APIClient().get(DOCS)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn.jsdelivr" not in html
    assert "unpkg" not in html
    assert not re.search(r"""(?:src|href)=["']https?://""", html)
    assets = re.findall(r"""(?:src|href)=["'](/static/[^"']+)["']""", html)
    assert any(a.endswith(".js") for a in assets)
    assert any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")), asset
    # No inline script (the Content-Security-Policy forbids it): the page loads its setup from
    # the docs view itself, and that script names the schema.
    setup = re.search(r"""<script src=["'](/api/docs/\?script=[^"']*)["']""", html)
    assert setup, html
    script = APIClient().get(setup.group(1).replace("&amp;", "&"))
    assert script.status_code == 200
    assert SCHEMA in script.content.decode()
