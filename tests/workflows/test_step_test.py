"""Testing one step (docs/workflows.md, "Test one step"): the step of the version on screen runs
once on sample input, outside any run, from the builder's step panel and the API; model calls
go through the gateway (a priced ledger row) and the result shows tokens, cost and duration."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from agents import services as agent_services
from agents.models import UsageRecord
from core.exceptions import PermissionDenied, ValidationFailed
from tenants.models import Membership, Role
from tenants.permissions import Access
from tests.fakes import FakeOpenAI
from tests.helpers.personas import World, access_of, key_client, logged_in, make_user
from tests.helpers.workflows import drain, flow, transform
from workflows import runs, selectors, services, step_tests
from workflows.models import Workflow, WorkflowRun

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
API = "/api/v1/workflows/"

# greet → shout → review (approval)
DEFINITION: dict[str, Any] = flow(
    [
        transform("greet", {"text": "Hello {{ input.name }}"}),
        transform("shout", "{{ upper(steps.greet.text) }}!"),
        {"id": "review", "type": "approval", "config": {"message": "Send {{ steps.shout }}?"}},
    ],
    [("greet", "shout"), ("shout", "review")],
    inputs={"name": {"type": "string", "required": True}},
)


def _workflow(access: Access, definition: dict[str, Any] = DEFINITION) -> Workflow:
    return services.workflow_create(access=access, name="Greeter", definition=definition)


def _url(workflow: Workflow, step_id: str, slug: str = "alpha") -> str:
    return reverse(
        "workflow_step_test",
        kwargs={"workspace_slug": slug, "workflow_id": workflow.pk, "step_id": step_id},
    )


@pytest.fixture
def greeter(world: World) -> Workflow:
    with schema_context(world.workspace_a.schema_name):
        return _workflow(access_of(world.owner, world.workspace_a))


# ------------------------------------------------------------------ the service


def test_a_transform_step_runs_alone_on_its_sample(owner_access: Access, in_alpha: None) -> None:
    workflow = _workflow(owner_access)
    version = selectors.version_latest(workflow)
    result = step_tests.step_test(
        access=owner_access,
        version=version,
        step_id="shout",
        sample={"input": {"name": "Ada"}, "steps": {"greet": {"text": "hello ada"}}},
    )
    assert result.succeeded, result.error
    assert result.output == "HELLO ADA!"
    assert (result.input_tokens, result.output_tokens, result.cost_usd) == (0, 0, Decimal(0))
    assert result.duration_ms >= 0
    # Nothing of a run, nothing of a version.
    assert not WorkflowRun.objects.exists()
    assert workflow.versions.count() == 1

    # A step that fails is a result too, with the engine's message.
    failed = step_tests.step_test(
        access=owner_access, version=version, step_id="shout", sample={"steps": {"greet": "x"}}
    )
    assert not failed.succeeded
    assert failed.error == "config.value: cannot read 'text' from a str"


def test_the_sample_starts_from_the_last_run_or_a_skeleton(
    owner_access: Access, in_alpha: None
) -> None:
    workflow = _workflow(owner_access)
    version = selectors.version_latest(workflow)
    skeleton = step_tests.step_test_sample(access=owner_access, version=version, step_id="shout")
    assert skeleton.run_id is None
    assert skeleton.data == {"input": {"name": ""}, "steps": {"greet": None}}

    run = runs.run_start(workflow=workflow, inputs={"name": "Ada"}, trigger="manual")
    drain()
    filled = step_tests.step_test_sample(access=owner_access, version=version, step_id="review")
    assert filled.run_id == run.pk
    assert filled.data == {
        "input": {"name": "Ada"},
        "steps": {"greet": {"text": "Hello Ada"}, "shout": "HELLO ADA!"},
    }


def test_steps_that_wait_for_something_cannot_be_tested_alone(
    owner_access: Access, in_alpha: None
) -> None:
    version = selectors.version_latest(_workflow(owner_access))
    with pytest.raises(ValidationFailed) as refused:
        step_tests.step_test(
            access=owner_access, version=version, step_id="review", sample={"input": {}}
        )
    assert "waits for a person's decision" in refused.value.message
    assert refused.value.fields["step"]


def test_a_bad_sample_and_a_step_with_problems_are_refused_naming_them(
    owner_access: Access, in_alpha: None
) -> None:
    workflow = _workflow(owner_access)
    version = selectors.version_latest(workflow)
    with pytest.raises(ValidationFailed) as bad:
        step_tests.step_test(
            access=owner_access, version=version, step_id="greet", sample={"steps": [], "x": 1}
        )
    assert bad.value.fields["sample"] == [
        "“x” is not a sample key (use input and steps)",
        "steps must be a JSON object",
    ]
    # A draft whose step has no value yet: saved (an incomplete draft), but not testable.
    half = json.loads(json.dumps(DEFINITION))
    half["steps"][0]["config"] = {}
    draft = services.version_save(
        access=owner_access, workflow=workflow, definition=half, allow_incomplete=True
    )
    draft.workflow = workflow
    with pytest.raises(ValidationFailed) as unfinished:
        step_tests.step_test(access=owner_access, version=draft, step_id="greet", sample={})
    assert unfinished.value.message.startswith("Fix the step before testing it: steps[0] (greet)")
    # Other steps of the same draft are testable: their own settings are complete.
    other = step_tests.step_test(
        access=owner_access,
        version=draft,
        step_id="shout",
        sample={"steps": {"greet": {"text": "a"}}},
    )
    assert other.output == "A!"


# ------------------------------------------------------------------ the builder


def test_the_panel_tests_an_llm_step_and_shows_tokens_and_cost(
    world: World, owner_client: Client, fake_model: str, fake_openai: FakeOpenAI
) -> None:
    definition = flow(
        [
            transform("topic", "{{ input.topic }}"),
            {
                "id": "summarise",
                "type": "llm",
                "config": {"model": fake_model, "prompt": "Summarise {{ steps.topic }}"},
            },
        ],
        [("topic", "summarise")],
        inputs={"topic": {"type": "string", "required": True}},
    )
    workflow = _workflow(access_of(world.owner, world.workspace_a), definition)
    fake_openai.queue(text="A short summary", usage={"prompt_tokens": 120, "completion_tokens": 30})
    detail = reverse(
        "workflow_detail", kwargs={"workspace_slug": "alpha", "workflow_id": workflow.pk}
    )
    panel = owner_client.get(detail + "?step=summarise").content.decode()
    assert f'hx-get="{_url(workflow, "summarise")}?version=1"' in panel

    form = owner_client.get(_url(workflow, "summarise") + "?version=1", **HX)
    assert form.status_code == 200
    assert json.loads(form.context["form"]["sample"].value()) == {
        "input": {"topic": ""},
        "steps": {"topic": None},
    }
    sample = {"input": {"topic": "x"}, "steps": {"topic": "tides"}}
    response = owner_client.post(
        _url(workflow, "summarise"), {"version": 1, "sample": json.dumps(sample)}, **HX
    )
    html = response.content.decode()
    assert response.status_code == 200, html
    assert html.lstrip().startswith('<section class="card" id="step-test"')
    assert "A short summary" in html
    assert "120 in · 30 out" in html
    # $3 / $15 per million tokens: 120 × 3 + 30 × 15 = 810 millionths of a dollar.
    assert "<dd>$0.00081</dd>" in html
    assert "<dt>Duration</dt>" in html
    assert fake_openai.last_request.body["messages"][-1]["content"] == "Summarise tides"
    with schema_context(world.workspace_a.schema_name):
        ledger = UsageRecord.objects.get()
        assert ledger.cost_usd == Decimal("0.000810")
        assert (ledger.input_tokens, ledger.output_tokens) == (120, 30)
        assert not WorkflowRun.objects.exists()


def test_the_panel_puts_sample_errors_beside_the_field(
    owner_client: Client, greeter: Workflow
) -> None:
    response = owner_client.post(
        _url(greeter, "shout"), {"version": 1, "sample": '{"input": '}, **HX
    )
    assert response.status_code == 400
    errors = response.context["form"].errors["sample"]
    assert errors == ["This is not JSON: Expecting value at line 1, column 10."]
    assert "This is not JSON" in response.content.decode()

    response = owner_client.post(_url(greeter, "shout"), {"version": 1, "sample": "[]"}, **HX)
    assert response.status_code == 400
    assert "The sample must be a JSON object" in response.context["form"].errors["sample"][0]

    untestable = owner_client.get(_url(greeter, "review") + "?version=1", **HX).content.decode()
    assert "only runs inside a run" in untestable
    assert "<textarea" not in untestable


def test_viewers_cannot_test_and_outsiders_do_not_see_the_workflow(
    world: World, greeter: Workflow, outsider_client: Client
) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    as_viewer = logged_in(viewer)
    url = _url(greeter, "shout")
    assert as_viewer.get(url).status_code == 403
    assert as_viewer.post(url, {"version": 1, "sample": "{}"}).status_code == 403
    detail = reverse(
        "workflow_detail", kwargs={"workspace_slug": "alpha", "workflow_id": greeter.pk}
    )
    assert "Test this step" not in as_viewer.get(detail + "?step=shout").content.decode()
    assert outsider_client.get(url).status_code == 404
    assert outsider_client.post(url, {"version": 1, "sample": "{}"}).status_code == 404
    with schema_context(world.workspace_a.schema_name), pytest.raises(PermissionDenied):
        step_tests.step_test(
            access=access_of(viewer, world.workspace_a),
            version=selectors.version_latest(greeter),
            step_id="shout",
            sample={},
        )


# ------------------------------------------------------------------ the API


def test_the_api_tests_an_agent_step_against_the_fake_model(
    world: World, fake_model: str, fake_openai: FakeOpenAI
) -> None:
    access = access_of(world.owner, world.workspace_a)
    agent_services.agent_create(access=access, name="Summariser", model=fake_model)
    workflow = _workflow(
        access,
        flow(
            [
                transform("topic", "{{ input.topic }}"),
                {
                    "id": "reply",
                    "type": "agent",
                    "config": {"agent": "Summariser", "prompt": "About {{ steps.topic }}"},
                },
            ],
            [("topic", "reply")],
            inputs={"topic": {"type": "string", "required": True}},
        ),
    )
    fake_openai.queue(text="Agent says hi", usage={"prompt_tokens": 200, "completion_tokens": 10})
    api = key_client(world, ["workspace.view", "run"])
    path = f"{API}{workflow.pk}/versions/1/steps/reply/test/"
    response = api.post(path, {"sample": {"steps": {"topic": "tides"}}}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["succeeded"] is True
    assert body["output"]["text"] == "Agent says hi"
    assert (body["input_tokens"], body["output_tokens"]) == (200, 10)
    assert body["cost_usd"] == "0.000750"  # 200 × 3 + 10 × 15 millionths
    assert body["input"]["prompt"] == "About tides"
    assert body["sample"] == {"steps": {"topic": "tides"}}
    with schema_context(world.workspace_a.schema_name):
        assert UsageRecord.objects.get().cost_usd == Decimal("0.000750")


def test_the_api_names_what_is_wrong_and_who_may_test(world: World, greeter: Workflow) -> None:
    path = f"{API}{greeter.pk}/versions/1/steps/shout/test/"
    runner = key_client(world, ["workspace.view", "run"])
    # Without a sample: the skeleton (no run yet), where the upstream output is null.
    skeleton = runner.post(path, {}, format="json")
    assert skeleton.status_code == 200
    assert skeleton.json()["sample"] == {"input": {"name": ""}, "steps": {"greet": None}}
    assert (skeleton.json()["succeeded"], skeleton.json()["output"]) == (True, "NONE!")
    # A step that fails is still a 200: the failure is the result.
    failed = runner.post(path, {"sample": {"steps": {"greet": "x"}}}, format="json")
    assert failed.status_code == 200
    assert failed.json()["succeeded"] is False
    assert failed.json()["error"] == "config.value: cannot read 'text' from a str"

    bad = runner.post(path, {"sample": {"input": []}}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"] == {"sample": ["input must be a JSON object"]}
    waits = runner.post(
        f"{API}{greeter.pk}/versions/1/steps/review/test/", {"sample": {}}, format="json"
    )
    assert waits.status_code == 400
    assert "only runs inside a run" in waits.json()["error"]["fields"]["step"][0]
    missing = runner.post(f"{API}{greeter.pk}/versions/1/steps/nope/test/", {}, format="json")
    assert missing.status_code == 404

    viewer = key_client(world, ["workspace.view"])
    denied = viewer.post(path, {"sample": {}}, format="json")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "permission_denied"
    theirs = key_client(world, ["workspace.view", "run"], workspace=world.workspace_b)
    assert theirs.post(path, {"sample": {}}, format="json").status_code == 404


def test_the_openapi_schema_has_the_step_test_endpoint(world: World) -> None:
    document = APIClient().get("/api/schema/", {"format": "json"}).json()
    operation = document["paths"]["/api/v1/workflows/{id}/versions/{number}/steps/{step_id}/test/"]
    assert operation["post"]["operationId"] == "workflow_versions_step_test"
    assert "200" in operation["post"]["responses"]
