"""Evaluations API: upload a dataset, define a suite, start an evaluation (202 + Location),
poll it and read its results; anonymous, outsider and viewer are refused."""

from __future__ import annotations

import pytest
from django.db import connection
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from agents.services import agent_create
from evals import services
from tenants.models import Membership, Role
from tests.helpers.personas import World, access_of, key_client, make_user

pytestmark = pytest.mark.django_db

JSONL = '{"input": "Say hello"}\n{"input": "What is 6 * 7?", "expected": "42"}\n'


def test_the_api_uploads_defines_starts_and_reads_an_evaluation(world: World) -> None:
    client = key_client(world, ["build", "run", "workspace.view"])
    created = client.post(
        "/api/v1/evals/datasets/",
        {"name": "Greetings", "filename": "g.jsonl", "content": JSONL},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["case_count"] == 2
    dataset_id = created.json()["id"]
    detail = client.get(f"/api/v1/evals/datasets/{dataset_id}/").json()
    assert [c["input"] for c in detail["cases"]] == ["Say hello", "What is 6 * 7?"]
    suite = client.post(
        "/api/v1/evals/suites/",
        {
            "name": "Hello",
            "dataset": dataset_id,
            "evaluators": [{"kind": "regex", "pattern": "hello"}],
            "pass_threshold": "0.5",
        },
        format="json",
    )
    assert suite.status_code == 201, suite.content
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(
            access=access_of(world.owner, world.workspace_a), name="G", model="offline:demo"
        )
    started = client.post(
        "/api/v1/evals/evaluations/",
        {"suite": suite.json()["id"], "agent": agent.pk},
        format="json",
    )
    assert started.status_code == 202, started.content
    evaluation_id = started.json()["id"]
    assert started["Location"] == f"/api/v1/evals/evaluations/{evaluation_id}/"
    assert started.json()["status"] == "queued"
    with schema_context(world.workspace_a.schema_name):
        services.evaluation_execute(evaluation_id)  # what the worker does
    status = client.get(started["Location"]).json()
    assert status["status"] == "passed"
    assert (status["cases_passed"], status["cases_total"], status["score"]) == (1, 2, "0.5000")
    results = client.get(f"/api/v1/evals/evaluations/{evaluation_id}/results/").json()
    assert [r["passed"] for r in results["results"]] == [True, False]
    assert results["results"][0]["verdicts"][0]["evaluator"] == "regex /hello/"
    assert connection.schema_name == "public"


def test_api_errors_name_the_line_and_the_evaluator(world: World) -> None:
    client = key_client(world, ["build", "workspace.view"])
    bad = client.post(
        "/api/v1/evals/datasets/",
        {"name": "Bad", "filename": "b.jsonl", "content": '{"input": ""}\n'},
        format="json",
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"]["file"] == ["line 1, field input: required text"]
    good = client.post(
        "/api/v1/evals/datasets/",
        {"name": "Good", "filename": "g.jsonl", "content": JSONL},
        format="json",
    )
    suite = client.post(
        "/api/v1/evals/suites/",
        {"name": "S", "dataset": good.json()["id"], "evaluators": [{"kind": "telepathy"}]},
        format="json",
    )
    assert suite.status_code == 400
    assert "evaluators.0.kind" in suite.json()["error"]["fields"]


def test_anonymous_callers_are_refused(api_client: APIClient) -> None:
    for url in ("/api/v1/evals/datasets/", "/api/v1/evals/evaluations/"):
        assert api_client.get(url).status_code in (401, 403)


def test_outsiders_get_404(world: World) -> None:
    with schema_context(world.workspace_a.schema_name):
        dataset = services.dataset_import(
            access=access_of(world.owner, world.workspace_a),
            name="Secret",
            filename="s.jsonl",
            data=JSONL.encode(),
        )
    client = APIClient()
    client.force_authenticate(world.outsider)
    assert (
        client.get(f"/api/v1/evals/datasets/{dataset.pk}/", HTTP_X_WORKSPACE="alpha").status_code
        == 404
    )
    assert (
        client.get(f"/api/v1/evals/datasets/{dataset.pk}/", HTTP_X_WORKSPACE="bravo").status_code
        == 404
    )
    own = client.get("/api/v1/evals/datasets/", HTTP_X_WORKSPACE="bravo").json()
    assert own["results"] == []


def test_viewers_read_but_cannot_write(world: World) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.get("/api/v1/evals/datasets/", HTTP_X_WORKSPACE="alpha").status_code == 200
    upload = client.post(
        "/api/v1/evals/datasets/",
        {"name": "X", "filename": "x.jsonl", "content": JSONL},
        format="json",
        HTTP_X_WORKSPACE="alpha",
    )
    assert upload.status_code == 403
    start = client.post(
        "/api/v1/evals/evaluations/",
        {"suite": 1, "agent": 1},
        format="json",
        HTTP_X_WORKSPACE="alpha",
    )
    assert start.status_code == 403
