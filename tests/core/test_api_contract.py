"""The API's transport contract: JSON only, one error envelope for what Django refuses before a
view runs (a body over the size limit), and the same size limit on the pages."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.test.utils import override_settings
from rest_framework.test import APIClient

from accounts.models import User
from tests.helpers.personas import World, key_client

pytestmark = pytest.mark.django_db

LIMIT = 2_000


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


# --- finding 1: an API key never reaches an HTML renderer or the page context


@pytest.mark.parametrize("path", ["/api/v1/members/", "/api/v1/agents/", "/api/v1/workspace/"])
def test_a_key_asking_for_html_gets_a_json_406_not_a_page(world: World, path: str) -> None:
    client = key_client(world, ["workspace.view", "members.view"])

    response = client.get(path, HTTP_ACCEPT="text/html")

    assert response.status_code == 406
    assert response["Content-Type"].startswith("application/json")
    assert error_of(response)["code"] == "not_acceptable"
    assert "outsider@bravo.test" not in response.content.decode()


def test_a_browser_accept_header_gets_json(world: World) -> None:
    client = key_client(world, ["members.view"])

    response = client.get(
        "/api/v1/members/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8"
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")


def test_the_docs_page_opened_with_a_key_renders_without_workspace_context(world: World) -> None:
    client = key_client(world, ["workspace.view"])

    response = client.get("/api/docs/", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    for email in ("owner@alpha.test", "member@alpha.test", "outsider@bravo.test"):
        assert email not in html


def test_form_bodies_are_refused_with_415(world: World) -> None:
    client = key_client(world, ["build"])

    response = client.post(
        "/api/v1/agents/", "name=x&model=offline", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


# --- a body over DATA_UPLOAD_MAX_MEMORY_SIZE


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT)
def test_an_api_body_over_the_limit_is_a_413_with_the_envelope(world: World) -> None:
    client = key_client(world, ["build"])
    body = json.dumps({"name": "big", "model": "offline", "system_prompt": "x" * (2 * LIMIT)})

    response = client.post("/api/v1/agents/", body, content_type="application/json")

    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "request_too_large"
    assert "larger than" in error["message"]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT)
def test_a_session_api_call_over_the_limit_is_a_413(owner: User) -> None:
    client = APIClient()
    client.force_login(owner)

    response = client.post(
        "/api/v1/agents/",
        json.dumps({"name": "big", "model": "offline", "system_prompt": "x" * (2 * LIMIT)}),
        content_type="application/json",
        HTTP_X_WORKSPACE="alpha",
    )

    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT)
def test_a_form_over_the_limit_gets_a_friendly_413_page(owner: User) -> None:
    client = Client()
    client.force_login(owner)

    response = client.post("/w/alpha/agents/new/", {"name": "big", "system_prompt": "x" * LIMIT})

    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "larger than this server accepts" in page
    assert "Go back" in page


# --- the contract the OpenAPI document states


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"offset": "null"}, "offset"),
        ({"offset": "-1"}, "offset"),
        ({"offset": ""}, "offset"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
    ],
)
def test_an_invalid_page_parameter_is_a_400_naming_it(
    world: World, query: dict, parameter: str
) -> None:
    client = key_client(world, ["members.view"])

    response = client.get("/api/v1/members/", query)

    assert response.status_code == 400
    assert parameter in error_of(response)["fields"]


def test_every_list_answers_the_same_envelope(world: World) -> None:
    client = key_client(world, ["workspace.view"])

    for path in ["/api/v1/workflows/templates/", "/api/v1/marketplace/listings/"]:
        body = client.get(path, {"limit": 1}).json()
        assert {"count", "next", "previous", "results"} <= set(body), path
        assert len(body["results"]) <= 1


@pytest.mark.parametrize(
    "body",
    [
        {"name": -489, "model": "offline:demo"},
        {"name": "typed", "model": "offline:demo", "max_tokens": "5"},
        {"name": "typed", "model": "offline:demo", "cache_enabled": "yes"},
        {"name": "typed", "model": "offline:demo", "tools": [1]},
    ],
)
def test_a_value_of_the_wrong_json_type_is_a_400_not_coerced(world: World, body: dict) -> None:
    client = key_client(world, ["build"])

    response = client.post("/api/v1/agents/", body, format="json")

    assert response.status_code == 400
    wrong = {name for name in body if name not in ("name", "model") or body[name] == -489}
    assert wrong <= set(error_of(response)["fields"])


def test_starting_an_agent_run_answers_202_with_a_location_to_poll(world: World) -> None:
    client = key_client(world, ["build", "run", "workspace.view"])
    agent = client.post("/api/v1/agents/", {"name": "Poller", "model": "offline:demo"}).json()

    accepted = client.post(f"/api/v1/agents/{agent['id']}/runs/", {"input": "hello"})

    assert accepted.status_code == 202
    assert accepted["Location"] == f"/api/v1/agents/{agent['id']}/runs/{accepted.json()['id']}/"
    assert client.get(accepted["Location"]).json()["id"] == accepted.json()["id"]


def test_the_document_states_errors_nullable_fields_and_the_export_body(world: World) -> None:
    document = APIClient().get("/api/schema/", {"format": "json"}).json()
    components = document["components"]["schemas"]

    members = document["paths"]["/api/v1/members/{id}/"]["patch"]["responses"]
    assert {"400", "401", "403", "404", "406", "409", "413", "415", "429", "503"} <= set(members)
    envelope = members["404"]["content"]["application/json"]["schema"]["$ref"]
    assert envelope.endswith("/ErrorOutput")
    assert components["InvitationOutput"]["properties"]["invited_by"]["nullable"] is True
    assert components["WorkflowStepOutput"]["properties"]["resume_url"]["nullable"] is True
    export = document["paths"]["/api/v1/workflows/{id}/export/"]["get"]["responses"]["200"]
    assert export["content"]["application/json"]["schema"]["type"] == "object"
    # YAML text that parses to the same document: a YAML-aware client validates the mapping
    assert export["content"]["application/yaml"]["schema"]["type"] == "object"
    accepted = document["paths"]["/api/v1/agents/{id}/runs/"]["post"]["responses"]["202"]
    assert "Location" in accepted["headers"]
    limit = next(
        p
        for p in document["paths"]["/api/v1/members/"]["get"]["parameters"]
        if p["name"] == "limit"
    )
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
