"""The workflow API: workflows, versions, runs (202 + poll + signed completion webhook),
steps, approvals, templates, export and import. Errors name the field; a key of another
workspace sees nothing (404) and a read-only key changes nothing (403)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from agents.webhooks import EVENT_HEADER, SIGNATURE_HEADER, verify, webhook_secret_rotate
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers.personas import World, access_of, key_client
from tests.helpers.workflows import drain
from workflows import library
from workflows.api import urls as api_urls
from workflows.models import StepRun, Workflow, WorkflowRun

pytestmark = pytest.mark.django_db

API = "/api/v1/workflows/"
EVERYTHING = ["workspace.view", "build", "run"]

GREETING = {
    "schema_version": 1,
    "inputs": {"name": {"type": "string", "required": True}},
    "steps": [
        {"id": "greet", "type": "transform", "config": {"value": "Hello {{ input.name }}"}},
        {"id": "shout", "type": "transform", "config": {"value": "{{ upper(steps.greet) }}"}},
    ],
    "edges": [{"from": "greet", "to": "shout"}],
    "output": {"text": "{{ steps.shout }}"},
}

REVIEWED = {
    "schema_version": 1,
    "inputs": {"topic": {"type": "string", "required": True}},
    "steps": [
        {"id": "draft", "type": "transform", "config": {"value": "Draft on {{ input.topic }}"}},
        {"id": "review", "type": "approval", "config": {"message": "Publish {{ steps.draft }}?"}},
        {"id": "publish", "type": "transform", "config": {"value": "Published {{ steps.draft }}"}},
    ],
    "edges": [
        {"from": "draft", "to": "review"},
        {"from": "review", "to": "publish", "branch": "approved"},
    ],
    "output": {"text": "{{ steps.publish }}"},
}


@pytest.fixture
def api(world: World) -> APIClient:
    return key_client(world, EVERYTHING)


def create(api: APIClient, definition: dict[str, Any] = GREETING, **fields: Any) -> dict:
    response = api.post(API, {"name": "Greeter", "definition": definition, **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def settle(world: World) -> None:
    """Run what the API queued, as the workers would (their messages are sent on commit)."""
    with schema_context(world.workspace_a.schema_name):
        drain()


def error(response: Any) -> dict[str, Any]:
    return response.json()["error"]


# --- workflows ------------------------------------------------------------------------------


def test_create_list_read_update_archive_and_restore(api: APIClient) -> None:
    created = create(api, description="Says hello", category="Demo")
    assert created["active_version"] == 1
    assert (created["name"], created["category"]) == ("Greeter", "Demo")
    pk = created["id"]

    listing = api.get(API).json()
    assert listing["count"] == 1
    assert listing["results"][0]["id"] == pk
    assert api.get(f"{API}{pk}/").json()["description"] == "Says hello"

    renamed = api.patch(f"{API}{pk}/", {"name": "Hello bot"}, format="json")
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Hello bot"
    assert renamed.json()["category"] == "Demo"  # untouched fields are kept

    archived = api.post(f"{API}{pk}/archive/")
    assert archived.status_code == 200
    assert archived.json()["archived_at"] is not None
    assert api.get(API).json()["count"] == 0
    assert api.get(API, {"include_archived": "true"}).json()["count"] == 1
    refused = api.post(f"{API}{pk}/runs/", {"inputs": {"name": "Ann"}}, format="json")
    assert refused.status_code == 409
    assert "archived" in error(refused)["message"]

    restored = api.post(f"{API}{pk}/restore/")
    assert restored.status_code == 200
    assert restored.json()["archived_at"] is None
    assert api.get(API).json()["count"] == 1


def test_validation_errors_name_the_field(api: APIClient) -> None:
    missing = api.post(API, {"definition": GREETING}, format="json")
    assert missing.status_code == 400
    assert "name" in error(missing)["fields"]

    broken = {**GREETING, "edges": [{"from": "greet", "to": "nowhere"}]}
    invalid = api.post(API, {"name": "Broken", "definition": broken}, format="json")
    assert invalid.status_code == 400
    problems = error(invalid)["fields"]["definition"]
    assert any("edges[0]" in p and "nowhere" in p for p in problems), problems

    pk = create(api)["id"]
    version = api.post(f"{API}{pk}/versions/", {"definition": broken}, format="json")
    assert version.status_code == 400
    assert "definition" in error(version)["fields"]

    no_input = api.post(f"{API}{pk}/runs/", {"inputs": {}}, format="json")
    assert no_input.status_code == 400
    assert any("name" in p for p in error(no_input)["fields"]["inputs"])

    bad_callback = api.post(
        f"{API}{pk}/runs/", {"inputs": {"name": "A"}, "callback_url": "ftp://x"}, format="json"
    )
    assert bad_callback.status_code == 400
    assert "callback_url" in error(bad_callback)["fields"]

    unknown_version = api.post(
        f"{API}{pk}/runs/", {"inputs": {"name": "A"}, "version": 9}, format="json"
    )
    assert unknown_version.status_code == 404

    bad_filter = api.get(f"{API}runs/", {"status": "exploded"})
    assert bad_filter.status_code == 400
    assert "status" in error(bad_filter)["fields"]
    backwards = api.get(f"{API}runs/", {"date_from": "2026-02-01", "date_to": "2026-01-01"})
    assert "date_to" in error(backwards)["fields"]

    bad_diff = api.get(f"{API}{pk}/versions/diff/", {"from": "x", "to": 1})
    assert bad_diff.status_code == 400
    assert "from" in error(bad_diff)["fields"]

    bad_format = api.get(f"{API}{pk}/export/", {"format": "xml"})
    assert bad_format.status_code == 400
    assert "format" in error(bad_format)["fields"]


# --- versions, export, import ---------------------------------------------------------------


def test_versions_save_publish_diff_and_roll_back(api: APIClient, world: World) -> None:
    pk = create(api)["id"]
    changed = json.loads(json.dumps(GREETING))
    changed["steps"][0]["config"]["value"] = "Hi {{ input.name }}"
    changed["steps"].append({"id": "sign", "type": "transform", "config": {"value": "-- bot"}})
    changed["edges"].append({"from": "shout", "to": "sign"})

    saved = api.post(
        f"{API}{pk}/versions/", {"definition": changed, "note": "Shorter"}, format="json"
    )
    assert saved.status_code == 201, saved.content
    assert (saved.json()["number"], saved.json()["is_active"]) == (2, False)
    same = api.post(f"{API}{pk}/versions/", {"definition": changed}, format="json")
    assert same.status_code == 400  # nothing changed

    listing = api.get(f"{API}{pk}/versions/").json()
    assert [v["number"] for v in listing["results"]] == [2, 1]
    detail = api.get(f"{API}{pk}/versions/2/").json()
    assert detail["definition"]["steps"][0]["config"]["value"] == "Hi {{ input.name }}"
    assert api.get(f"{API}{pk}/versions/7/").status_code == 404

    diff = api.get(f"{API}{pk}/versions/diff/", {"from": 1, "to": 2}).json()
    assert diff["steps_added"] == ["sign"]
    assert diff["steps_removed"] == []
    assert diff["steps_changed"] == [
        {
            "step": "greet",
            "changes": [
                {
                    "field": "config.value",
                    "old": "Hello {{ input.name }}",
                    "new": "Hi {{ input.name }}",
                }
            ],
        }
    ]
    assert diff["edges_added"] == [{"from": "shout", "to": "sign", "branch": ""}]
    assert diff["text"].startswith("--- version 1\n+++ version 2")
    assert '"sign"' in diff["text"]

    published = api.post(f"{API}{pk}/versions/2/publish/")
    assert published.status_code == 200
    assert published.json()["is_active"] is True
    assert api.get(f"{API}{pk}/").json()["active_version"] == 2

    rolled = api.post(f"{API}{pk}/versions/1/rollback/")
    assert rolled.status_code == 201
    assert (rolled.json()["number"], rolled.json()["source"], rolled.json()["is_active"]) == (
        3,
        "rollback",
        True,
    )
    assert rolled.json()["definition"] == api.get(f"{API}{pk}/versions/1/").json()["definition"]

    # A run may pin a version other than the active one.
    pinned = api.post(f"{API}{pk}/runs/", {"inputs": {"name": "Ann"}, "version": 2}, format="json")
    assert pinned.status_code == 202
    assert pinned.json()["version"] == 2
    settle(world)
    body = api.get(f"{API}runs/{pinned.json()['id']}/").json()
    assert body["output"] == {"text": "HI ANN"}


def test_a_version_saved_on_a_stale_version_is_refused_with_409_naming_the_newer_one(
    api: APIClient,
) -> None:
    # Given a workflow whose version 2 someone saved after we loaded version 1
    pk = create(api)["id"]
    theirs = json.loads(json.dumps(GREETING))
    theirs["steps"][0]["config"]["value"] = "Hi {{ input.name }}"
    assert (
        api.post(f"{API}{pk}/versions/", {"definition": theirs}, format="json").status_code == 201
    )
    ours = json.loads(json.dumps(GREETING))
    ours["steps"][1]["config"]["value"] = "{{ lower(steps.greet) }}"

    # When we save our edit of version 1, saying so
    stale = api.post(
        f"{API}{pk}/versions/", {"definition": ours, "based_on_version": 1}, format="json"
    )

    # Then nothing is saved and the error names version 2
    assert stale.status_code == 409, stale.content
    error = stale.json()["error"]
    assert error["code"] == "conflict"
    assert "Someone saved version 2 since you opened version 1" in error["message"]
    assert [v["number"] for v in api.get(f"{API}{pk}/versions/").json()["results"]] == [2, 1]

    # On the latest version, or without saying which, it is saved
    fresh = api.post(
        f"{API}{pk}/versions/", {"definition": ours, "based_on_version": 2}, format="json"
    )
    assert fresh.status_code == 201
    assert fresh.json()["number"] == 3
    ours["steps"][1]["config"]["value"] = "{{ steps.greet }}!"
    blind = api.post(f"{API}{pk}/versions/", {"definition": ours}, format="json")
    assert blind.status_code == 201
    assert blind.json()["number"] == 4


def test_a_based_on_version_that_does_not_exist_yet_is_refused(api: APIClient) -> None:
    pk = create(api)["id"]
    changed = json.loads(json.dumps(GREETING))
    changed["steps"][0]["config"]["value"] = "Hi {{ input.name }}"
    ahead = api.post(
        f"{API}{pk}/versions/", {"definition": changed, "based_on_version": 5}, format="json"
    )
    assert ahead.status_code == 409
    assert ahead.json()["error"]["message"].startswith("There is no version 5: version 1 is")
    bad = api.post(
        f"{API}{pk}/versions/", {"definition": changed, "based_on_version": 0}, format="json"
    )
    assert bad.status_code == 400
    assert "based_on_version" in bad.json()["error"]["fields"]


def test_export_and_import_round_trip_in_json_and_yaml(api: APIClient) -> None:
    pk = create(api, description="Says hello")["id"]

    as_json = api.get(f"{API}{pk}/export/")
    assert as_json.status_code == 200
    assert as_json["Content-Type"].startswith("application/json")
    assert json.loads(as_json.content)["steps"][0]["id"] == "greet"
    as_yaml = api.get(f"{API}{pk}/export/", {"format": "yaml"})
    assert as_yaml["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.content)["edges"] == [{"from": "greet", "to": "shout"}]

    for document, fmt in ((as_json.content.decode(), "json"), (as_yaml.content.decode(), None)):
        imported = api.post(
            f"{API}import/",
            {"document": document, "format": fmt, "name": f"Copy {fmt}"},
            format="json",
        )
        assert imported.status_code == 201, imported.content
        copy = imported.json()
        assert copy["name"] == f"Copy {fmt}"
        assert copy["active_version"] == 1
        again = yaml.safe_load(api.get(f"{API}{copy['id']}/export/", {"format": "yaml"}).content)
        original = yaml.safe_load(as_yaml.content)
        assert {**again, "name": "Greeter"} == original

    syntax = api.post(
        f"{API}import/", {"document": "steps: [\n  {id: 1", "format": "yaml"}, format="json"
    )
    assert syntax.status_code == 400
    assert "line" in json.dumps(error(syntax)).lower()


# --- runs, steps, approvals ----------------------------------------------------------------


def test_start_is_accepted_then_polled_listed_and_rerun(api: APIClient, world: World) -> None:
    pk = create(api)["id"]
    accepted = api.post(f"{API}{pk}/runs/", {"inputs": {"name": "Ann"}}, format="json")

    assert accepted.status_code == 202
    run = accepted.json()
    assert run["status"] == "queued"
    assert run["trigger"] == "api"
    assert run["version"] == 1
    assert accepted["Location"] == f"{API}runs/{run['id']}/"
    assert [s["node_id"] for s in run["steps"]] == ["greet", "shout"]

    settle(world)
    polled = api.get(accepted["Location"]).json()
    assert polled["status"] == "succeeded"
    assert polled["output"] == {"text": "HELLO ANN"}
    assert [(s["node_id"], s["status"], s["output"]) for s in polled["steps"]] == [
        ("greet", "succeeded", "Hello Ann"),
        ("shout", "succeeded", "HELLO ANN"),
    ]
    step = api.get(f"{API}steps/{polled['steps'][0]['id']}/").json()
    assert (step["run"], step["node_id"], step["attempt"]) == (run["id"], "greet", 1)

    again = api.post(f"{API}runs/{run['id']}/rerun/")
    assert again.status_code == 202
    assert again.json()["trigger"] == "rerun"
    assert again.json()["rerun_of"] == run["id"]
    assert again.json()["inputs"] == {"name": "Ann"}

    everything = api.get(f"{API}runs/").json()
    assert [r["id"] for r in everything["results"]] == [again.json()["id"], run["id"]]
    assert api.get(f"{API}runs/", {"status": "succeeded"}).json()["count"] == 1
    assert api.get(f"{API}runs/", {"trigger": "rerun"}).json()["count"] == 1
    assert api.get(f"{API}{pk}/runs/", {"version": 1}).json()["count"] == 2
    assert api.get(f"{API}{pk}/runs/", {"version": 2}).json()["count"] == 0
    assert api.get(f"{API}runs/", {"workflow": pk, "date_from": "2000-01-01"}).json()["count"] == 2


def test_cancel_stops_a_run_that_has_not_ended(api: APIClient) -> None:
    pk = create(api)["id"]
    run = api.post(f"{API}{pk}/runs/", {"inputs": {"name": "Ann"}}, format="json").json()

    cancelled = api.post(f"{API}runs/{run['id']}/cancel/")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert {s["status"] for s in cancelled.json()["steps"]} == {"cancelled"}
    again = api.post(f"{API}runs/{run['id']}/cancel/")
    assert again.status_code == 409


def test_approval_through_the_api_lets_the_run_continue(api: APIClient, world: World) -> None:
    pk = create(api, REVIEWED, name="Reviewed")["id"]
    run = api.post(f"{API}{pk}/runs/", {"inputs": {"topic": "pricing"}}, format="json").json()
    settle(world)
    waiting = api.get(f"{API}runs/{run['id']}/").json()
    assert waiting["status"] == "waiting"
    review = next(s for s in waiting["steps"] if s["node_id"] == "review")
    assert review["status"] == "waiting"
    undecided = api.post(f"{API}steps/{review['id']}/approval/", {"comment": "hm"}, format="json")
    assert undecided.status_code == 400
    assert "approved" in error(undecided)["fields"]

    decided = api.post(
        f"{API}steps/{review['id']}/approval/",
        {"approved": True, "comment": "Ship it"},
        format="json",
    )
    assert decided.status_code == 200, decided.content
    assert decided.json()["decision_comment"] == "Ship it"
    settle(world)
    done = api.get(f"{API}runs/{run['id']}/").json()
    assert done["status"] == "succeeded"
    assert done["output"] == {"text": "Published Draft on pricing"}

    twice = api.post(f"{API}steps/{review['id']}/approval/", {"approved": False}, format="json")
    assert twice.status_code == 409  # already decided: the state, not the request, is wrong
    assert error(twice)["code"] == "conflict"
    assert "step" in error(twice)["fields"]


def test_a_rejected_step_is_retried_and_a_failed_run_resumed(api: APIClient, world: World) -> None:
    pk = create(api, REVIEWED, name="Reviewed")["id"]
    run = api.post(f"{API}{pk}/runs/", {"inputs": {"topic": "tax"}}, format="json").json()
    settle(world)
    review_id = next(
        s["id"]
        for s in api.get(f"{API}runs/{run['id']}/").json()["steps"]
        if s["node_id"] == "review"
    )

    # Rejected without a "rejected" edge: the step and the run fail with the comment.
    api.post(
        f"{API}steps/{review_id}/approval/", {"approved": False, "comment": "Wrong"}, format="json"
    )
    failed = api.get(f"{API}runs/{run['id']}/").json()
    assert failed["status"] == "failed"
    assert "Wrong" in failed["error"]
    assert api.get(f"{API}runs/", {"status": "failed"}).json()["count"] == 1

    # Retrying the step asks again; the succeeded draft is not run again.
    retried = api.post(f"{API}steps/{review_id}/retry/")
    assert retried.status_code == 202
    settle(world)
    assert api.get(f"{API}steps/{review_id}/").json()["status"] == "waiting"
    api.post(
        f"{API}steps/{review_id}/approval/",
        {"approved": False, "comment": "Still no"},
        format="json",
    )

    # Resuming the failed run does the same for every failed step.
    resumed = api.post(f"{API}runs/{run['id']}/resume/")
    assert resumed.status_code == 202
    assert resumed.json()["status"] == "running"
    settle(world)
    api.post(f"{API}steps/{review_id}/approval/", {"approved": True}, format="json")
    settle(world)
    done = api.get(f"{API}runs/{run['id']}/").json()
    assert done["status"] == "succeeded"
    steps = {s["node_id"]: s for s in done["steps"]}
    assert steps["draft"]["attempt"] == 1
    assert steps["review"]["attempt"] == 3

    # A state that does not allow it is a conflict, not a bad request.
    not_failed = api.post(f"{API}runs/{run['id']}/resume/")
    assert not_failed.status_code == 409
    assert "run" in error(not_failed)["fields"]
    not_failed_step = api.post(f"{API}steps/{review_id}/retry/")
    assert not_failed_step.status_code == 409
    assert "step" in error(not_failed_step)["fields"]


# --- templates ------------------------------------------------------------------------------


def test_templates_are_listed_and_become_workflows(api: APIClient) -> None:
    listing = api.get(f"{API}templates/")
    assert listing.status_code == 200
    keys = [t["key"] for t in listing.json()["results"]]  # the list envelope, like every list
    assert len(keys) >= 13
    assert keys == [t.key for t in library.templates()]
    template = library.templates()[0]

    detail = api.get(f"{API}templates/{template.key}/").json()
    assert detail["definition"]["steps"]
    assert detail["name"] == template.name
    assert api.get(f"{API}templates/no-such-template/").status_code == 404

    created = api.post(f"{API}templates/{template.key}/instantiate/", {}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["template_key"] == template.key
    named = api.post(f"{API}templates/{template.key}/instantiate/", {"name": "Ours"}, format="json")
    assert named.json()["name"] == "Ours"
    assert named.json()["active_version"] == 1


def test_lists_and_polls_do_not_query_per_row(api: APIClient, world: World) -> None:
    def queries(path: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get(path).status_code == 200
        return len(captured)

    pk = create(api)["id"]
    first = api.post(f"{API}{pk}/runs/", {"inputs": {"name": "a"}}, format="json").json()
    settle(world)
    paths = [API, f"{API}runs/", f"{API}{pk}/runs/", f"{API}{pk}/versions/"]
    few = {path: queries(path) for path in paths}
    poll = queries(f"{API}runs/{first['id']}/")

    for n in range(4):
        create(api, name=f"Greeter {n}")
        api.post(f"{API}{pk}/runs/", {"inputs": {"name": str(n)}}, format="json")
        changed = json.loads(json.dumps(GREETING))
        changed["steps"][0]["config"]["value"] = f"Hi {n}"
        api.post(f"{API}{pk}/versions/", {"definition": changed}, format="json")
    settle(world)

    assert {path: queries(path) for path in paths} == few
    assert queries(f"{API}runs/{first['id']}/") == poll


# --- who may do what ------------------------------------------------------------------------


def _everything(world: World, api: APIClient) -> dict[str, Any]:
    """A workflow of A with a waiting approval run; ids for every endpoint."""
    pk = create(api, REVIEWED, name="Reviewed")["id"]
    run = api.post(f"{API}{pk}/runs/", {"inputs": {"topic": "x"}}, format="json").json()
    settle(world)
    with schema_context(world.workspace_a.schema_name):
        step = StepRun.objects.get(run_id=run["id"], node_id="review")
    return {"pk": pk, "run": run["id"], "step": step.pk, "key": library.templates()[0].key}


ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("get", "", {}),
    ("get", "runs/", {}),
    ("get", "templates/", {}),
    ("get", "templates/{key}/", {}),
    ("get", "{pk}/", {}),
    ("patch", "{pk}/", {"name": "Taken over"}),
    ("post", "{pk}/archive/", {}),
    ("post", "{pk}/restore/", {}),
    ("get", "{pk}/export/", {}),
    ("get", "{pk}/versions/", {}),
    ("post", "{pk}/versions/", {"definition": GREETING}),
    ("get", "{pk}/versions/1/", {}),
    ("post", "{pk}/versions/1/publish/", {}),
    ("post", "{pk}/versions/1/rollback/", {}),
    ("post", "{pk}/versions/1/steps/draft/test/", {}),
    ("get", "{pk}/versions/diff/?from=1&to=1", {}),
    ("get", "{pk}/runs/", {}),
    ("post", "{pk}/runs/", {"inputs": {"topic": "x"}}),
    ("get", "runs/{run}/", {}),
    ("post", "runs/{run}/cancel/", {}),
    ("post", "runs/{run}/resume/", {}),
    ("post", "runs/{run}/rerun/", {}),
    ("get", "steps/{step}/", {}),
    ("post", "steps/{step}/retry/", {}),
    ("post", "steps/{step}/approval/", {"approved": True}),
]
MUTATIONS_WITHOUT_OBJECTS: list[tuple[str, str, dict[str, Any]]] = [
    ("post", "", {"name": "New", "definition": GREETING}),
    ("post", "templates/{key}/instantiate/", {}),
    ("post", "import/", {"document": json.dumps(GREETING), "format": "json"}),
]


def _call(client: APIClient, method: str, path: str, ids: dict, body: dict, **headers: Any) -> Any:
    return getattr(client, method)(API + path.format(**ids), body, format="json", **headers)


def _unchanged(world: World, ids: dict[str, Any]) -> tuple:
    with schema_context(world.workspace_a.schema_name):
        workflow = Workflow.objects.get(pk=ids["pk"])
        run = WorkflowRun.objects.get(pk=ids["run"])
        return (
            workflow.name,
            workflow.archived_at,
            workflow.versions.count(),
            WorkflowRun.objects.count(),
            Workflow.objects.count(),
            run.status,
            StepRun.objects.get(pk=ids["step"]).status,
        )


def test_a_key_of_another_workspace_gets_404_on_every_endpoint(
    world: World, api: APIClient
) -> None:
    ids = _everything(world, api)
    before = _unchanged(world, ids)
    theirs = key_client(world, EVERYTHING, workspace=world.workspace_b)
    for method, path, body in ENDPOINTS:
        if path.startswith("templates/"):
            continue  # the library is the same for everyone
        response = _call(theirs, method, path, ids, body)
        if "{" in path:
            assert response.status_code == 404, (method, path, response.content)
        else:  # their own lists: none of A's workflows or runs
            assert response.status_code == 200, path
            assert response.json()["count"] == 0, path
    # Signed in as the outsider, naming workspace A: A does not exist for them.
    session = APIClient()
    session.force_authenticate(world.outsider)
    for method, path, body in ENDPOINTS + MUTATIONS_WITHOUT_OBJECTS:
        response = _call(session, method, path, ids, body, HTTP_X_WORKSPACE="alpha")
        assert response.status_code == 404, (method, path, response.content)
    assert _unchanged(world, ids) == before


def test_a_read_only_key_reads_but_cannot_change_anything(world: World, api: APIClient) -> None:
    ids = _everything(world, api)
    before = _unchanged(world, ids)
    viewer = key_client(world, ["workspace.view"])
    for method, path, body in ENDPOINTS + MUTATIONS_WITHOUT_OBJECTS:
        response = _call(viewer, method, path, ids, body)
        if method == "get":
            assert response.status_code == 200, (path, response.content)
        else:
            assert response.status_code == 403, (method, path, response.content)
            assert error(response)["code"] == "permission_denied"
    assert _unchanged(world, ids) == before
    assert viewer.get(f"{API}templates/").status_code == 200


def test_a_key_without_workspace_view_cannot_read(world: World, api: APIClient) -> None:
    ids = _everything(world, api)
    runner = key_client(world, ["run"])
    for path in ("", "{pk}/", "runs/{run}/", "steps/{step}/", "templates/"):
        assert _call(runner, "get", path, ids, {}).status_code == 403, path


# --- a real worker ---------------------------------------------------------------------------


@pytest.mark.worker
def test_a_run_started_over_the_api_finishes_on_a_worker_and_calls_back_signed(
    committed_world: World, worker_queue: str, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the receiver is on loopback
    secret = webhook_secret_rotate(
        access=access_of(committed_world.owner, committed_world.workspace_a)
    )
    api = key_client(committed_world, EVERYTHING)
    pk = create(api)["id"]

    with WebhookReceiver() as receiver:
        accepted = api.post(
            f"{API}{pk}/runs/",
            {"inputs": {"name": "Worker"}, "callback_url": receiver.url},
            format="json",
        )
        assert accepted.status_code == 202
        assert receiver.arrived.wait(timeout=60), "no completion webhook within 60 s"

    polled = api.get(accepted["Location"]).json()
    assert polled["status"] == "succeeded", polled
    assert polled["output"] == {"text": "HELLO WORKER"}
    assert {s["status"] for s in polled["steps"]} == {"succeeded"}
    request = receiver.received[0]
    assert verify(secret, request["headers"][SIGNATURE_HEADER.lower()], request["body"])
    assert request["headers"][EVENT_HEADER.lower()] == "workflow_run.finished"
    payload = json.loads(request["body"])
    assert payload["run"]["id"] == polled["id"]
    assert (payload["run"]["status"], payload["run"]["output"]) == (
        "succeeded",
        {"text": "HELLO WORKER"},
    )
    assert payload["run"]["workflow"] == {"id": pk, "name": "Greeter"}


# --- the OpenAPI schema ---------------------------------------------------------------------


def _routes(patterns: list[URLPattern | URLResolver]) -> list[URLPattern]:
    return [p for p in patterns if isinstance(p, URLPattern)]


def test_every_workflow_endpoint_is_in_the_openapi_schema(world: World) -> None:
    document = APIClient().get("/api/schema/", {"format": "json"}).json()
    paths = document["paths"]
    for pattern in _routes(api_urls.urlpatterns):
        route = "/api/v1/" + str(pattern.pattern)
        for converter in ("int:", "slug:", "str:"):
            route = route.replace("<" + converter, "{")
        route = route.replace(">", "}").replace("{pk}", "{id}")
        assert route in paths, route
        view = pattern.callback.view_class
        methods = {m for m in ("get", "post", "patch", "put", "delete") if hasattr(view, m)}
        assert methods <= set(paths[route]), (route, methods)
        for method in methods:
            operation = paths[route][method]
            assert operation["operationId"], route
            headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            assert "X-Workspace" in headers, route
    start = paths["/api/v1/workflows/{id}/runs/"]["post"]
    assert "202" in start["responses"]
    export = paths["/api/v1/workflows/{id}/export/"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "application/yaml"} <= set(export)
    save = paths["/api/v1/workflows/{id}/versions/"]["post"]
    assert "409" in save["responses"]
    body = save["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    based_on = document["components"]["schemas"][body]["properties"]["based_on_version"]
    assert "409" in based_on["description"]
    assert "based_on_version" not in document["components"]["schemas"][body].get("required", [])
