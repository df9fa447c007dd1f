"""Published workflows as MCP tools, driven by the official `mcp` client over Streamable HTTP
against the whole ASGI application on a loopback port; runs are executed by a real Celery
worker where a test needs them to finish."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import anyio
import mcp_types as types
import pytest
from django_tenants.utils import schema_context
from jsonschema import Draft202012Validator
from mcp import Client

from agents.gateway import budgets
from billing.models import ModelPrice
from billing.plans import default_plan
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import flow, make_workflow, transform
from tests.mcp_server.test_mcp_server import _key, _session, _url
from workflows import runs, services
from workflows.models import RunStatus, Workflow, WorkflowRun
from workflows.runnable import inputs_json_schema

pytestmark = pytest.mark.django_db(transaction=True)

INPUTS: dict[str, Any] = {
    "topic": {"type": "string", "required": True, "description": "What the post is about."},
    "words": {"type": "integer", "default": 50},
    "score": {"type": "number"},
    "loud": {"type": "boolean", "required": True, "default": False},
    "tags": {"type": "array"},
    "meta": {"type": "object", "description": "Anything else."},
}
WRITE_POST = flow(
    [
        transform(
            "draft",
            {"title": "About {{ input.topic }}", "words": "{{ input.words }}"},
        )
    ],
    [],
    inputs=INPUTS,
)


def _workflow(world: World, name: str, definition: dict[str, Any], *, exposed: bool) -> Workflow:
    access = access_of(world.owner, world.workspace_a)
    with schema_context(world.workspace_a.schema_name):
        workflow = services.workflow_create(
            access=access, name=name, description=f"{name}, step by step.", definition=definition
        )
        return services.workflow_update(
            access=access,
            workflow=workflow,
            name=name,
            description=workflow.description,
            category="",
            mcp_exposed=exposed,
        )


def _call(server: SimpleNamespace, secret: str, name: str, arguments: dict[str, Any]) -> Any:
    async def body(client: Client) -> types.CallToolResult:
        return await client.call_tool(name, arguments)

    return anyio.run(_session, _url(server), secret, body)


def _text(result: types.CallToolResult) -> str:
    assert len(result.content) == 1
    assert isinstance(result.content[0], types.TextContent)
    return result.content[0].text


def _runs(world: World) -> list[WorkflowRun]:
    with schema_context(world.workspace_a.schema_name):
        return list(WorkflowRun.objects.order_by("id"))


def test_the_list_has_exposed_published_workflows_with_their_inputs_as_the_schema(
    committed_world: World, asgi_live_server: SimpleNamespace
) -> None:
    shown = _workflow(committed_world, "Write Post", WRITE_POST, exposed=True)
    _workflow(committed_world, "Hidden", WRITE_POST, exposed=False)
    archived = _workflow(committed_world, "Old Post", WRITE_POST, exposed=True)
    access = access_of(committed_world.owner, committed_world.workspace_a)
    with schema_context(committed_world.workspace_a.schema_name):
        services.workflow_archive(access=access, workflow=archived)
        # Published, then broken: a step the checks refuse (saved around them, as an agent
        # the version names being deleted would do).
        broken = make_workflow(flow([{"id": "a", "type": "transform", "config": {}}], []))
        Workflow.objects.filter(pk=broken.pk).update(mcp_exposed=True)
    secret = _key(committed_world, ["run"])

    async def body(client: Client) -> list[types.Tool]:
        return (await client.list_tools()).tools

    tools = anyio.run(_session, _url(asgi_live_server), secret, body)

    assert [t.name for t in tools] == [f"workflow_{shown.pk}_write_post"]
    tool = tools[0]
    assert tool.title == "Write Post"
    assert tool.description == "Write Post, step by step."
    assert tool.input_schema == {
        "type": "object",
        "properties": {
            "topic": {"type": "string", "description": "What the post is about."},
            "words": {"type": "integer", "default": 50},
            "score": {"type": "number"},
            "loud": {"type": "boolean", "default": False},
            "tags": {"type": "array"},
            "meta": {"type": "object", "description": "Anything else."},
        },
        "required": ["topic"],  # "loud" is required but has a default
        "additionalProperties": False,
    }
    Draft202012Validator.check_schema(tool.input_schema)


def test_a_call_runs_the_published_workflow_and_answers_its_output(
    committed_world: World, worker_queue: str, asgi_live_server: SimpleNamespace
) -> None:
    workflow = _workflow(committed_world, "Write Post", WRITE_POST, exposed=True)
    secret = _key(committed_world, ["run"])
    arguments = {"topic": "refunds", "words": 120.0, "tags": ["billing"]}
    # What the tool's schema accepts, the run-start check accepts.
    Draft202012Validator(inputs_json_schema(WRITE_POST)).validate(arguments)

    result = _call(asgi_live_server, secret, f"workflow_{workflow.pk}_write_post", arguments)

    [run] = _runs(committed_world)
    assert result.is_error is False, _text(result)
    assert run.status == RunStatus.SUCCEEDED
    assert run.trigger == WorkflowRun.TriggerKind.API  # an ordinary API run
    assert run.api_key_prefix
    assert secret.startswith(run.api_key_prefix)
    assert run.inputs == {"topic": "refunds", "words": 120, "tags": ["billing"], "loud": False}
    assert run.output == {"draft": {"title": "About refunds", "words": 120}}
    assert result.structured_content == run.output
    assert _text(result) == '{"draft": {"title": "About refunds", "words": 120}}'


def test_bad_arguments_are_a_tool_error_naming_each_input_and_start_nothing(
    committed_world: World, asgi_live_server: SimpleNamespace
) -> None:
    workflow = _workflow(committed_world, "Write Post", WRITE_POST, exposed=True)
    hidden = _workflow(committed_world, "Hidden", WRITE_POST, exposed=False)
    secret = _key(committed_world, ["run"])

    async def body(client: Client) -> list[types.CallToolResult]:
        return [
            await client.call_tool(f"workflow_{workflow.pk}_write_post", {}),
            await client.call_tool(
                f"workflow_{workflow.pk}_write_post", {"topic": 7, "words": "many"}
            ),
            await client.call_tool(f"workflow_{hidden.pk}_hidden", {"topic": "x"}),
        ]

    missing, wrong, unexposed = anyio.run(_session, _url(asgi_live_server), secret, body)

    assert [missing.is_error, wrong.is_error, unexposed.is_error] == [True, True, True]
    assert _text(missing) == "The run's inputs are not valid: topic: required (a string)."
    assert _text(wrong) == (
        "The run's inputs are not valid: topic: must be a string, not a integer; "
        "words: must be a integer, not a string."
    )
    assert _text(unexposed) == f"No tool named 'workflow_{hidden.pk}_hidden' in this workspace."
    assert _runs(committed_world) == []


def test_a_failing_workflow_is_a_tool_error_naming_the_run_and_the_step(
    committed_world: World, worker_queue: str, asgi_live_server: SimpleNamespace
) -> None:
    definition = flow(
        [
            transform("ok", "fine"),
            {
                "id": "divide",
                "type": "transform",
                "name": "Divide",
                "config": {"value": "{{ 1 / 0 }}"},
            },
        ],
        [("ok", "divide")],
    )
    workflow = _workflow(committed_world, "Divider", definition, exposed=True)
    secret = _key(committed_world, ["run"])

    result = _call(asgi_live_server, secret, f"workflow_{workflow.pk}_divider", {})

    [run] = _runs(committed_world)
    assert run.status == RunStatus.FAILED
    assert result.is_error
    assert _text(result).startswith(f"Run {run.pk} failed: Divide: ")
    assert "division by zero" in _text(result)


def test_the_plans_run_allowance_refuses_the_call_before_any_run(
    committed_world: World, asgi_live_server: SimpleNamespace, settings: Any
) -> None:
    workflow = _workflow(committed_world, "Write Post", WRITE_POST, exposed=True)
    settings.BILLING_QUOTAS = True
    plan = default_plan()
    plan.runs_per_month = 0
    plan.save(update_fields=["runs_per_month"])
    secret = _key(committed_world, ["run"])

    result = _call(
        asgi_live_server, secret, f"workflow_{workflow.pk}_write_post", {"topic": "refunds"}
    )

    assert result.is_error
    assert "runs its Free plan includes" in _text(result)
    assert _runs(committed_world) == []


def test_the_workspace_budget_refuses_the_model_call_and_the_tool_says_so(
    committed_world: World, worker_queue: str, asgi_live_server: SimpleNamespace
) -> None:
    ModelPrice.objects.create(
        provider="offline",
        model="metered",
        input_per_mtok=Decimal(1000),
        output_per_mtok=Decimal(1000),
    )
    with schema_context(committed_world.workspace_a.schema_name):
        budgets.budget_set(
            access=access_of(committed_world.owner, committed_world.workspace_a),
            monthly_cap_usd=Decimal("0.01"),
        )
    definition = flow(
        [
            {
                "id": "ask",
                "type": "llm",
                "config": {"model": "offline:metered", "prompt": "Summarise {{ input.topic }}"},
            }
        ],
        [],
        inputs={"topic": {"type": "string", "required": True}},
    )
    workflow = _workflow(committed_world, "Summary", definition, exposed=True)
    secret = _key(committed_world, ["run"])

    result = _call(
        asgi_live_server, secret, f"workflow_{workflow.pk}_summary", {"topic": "refunds"}
    )

    [run] = _runs(committed_world)
    assert run.status == RunStatus.FAILED
    assert result.is_error
    assert _text(result).startswith(f"Run {run.pk} failed: ask: ")
    assert "monthly budget" in _text(result)


def test_a_run_waiting_for_approval_answers_where_to_decide_and_follow_it(
    committed_world: World, worker_queue: str, asgi_live_server: SimpleNamespace, settings: Any
) -> None:
    definition = flow(
        [
            transform("draft", "Draft for {{ input.topic }}"),
            {"id": "review", "type": "approval", "config": {"message": "Publish?"}},
            transform("publish", "published"),
        ],
        [("draft", "review"), ("review", "publish", "approved")],
        inputs={"topic": {"type": "string", "required": True}},
    )
    workflow = _workflow(committed_world, "Reviewed", definition, exposed=True)
    secret = _key(committed_world, ["run"])

    result = _call(
        asgi_live_server, secret, f"workflow_{workflow.pk}_reviewed", {"topic": "refunds"}
    )

    [run] = _runs(committed_world)
    assert run.status == RunStatus.WAITING
    assert result.is_error is False
    site = settings.SITE_URL.rstrip("/")
    assert _text(result) == (
        f"Run {run.pk} waits for approval at step “review”: see it at "
        f"{site}/w/alpha/workflows/runs/{run.pk}/. It goes on from there: follow it with "
        f"GET /api/v1/workflows/runs/{run.pk}/."
    )
    with schema_context(committed_world.workspace_a.schema_name):  # and it does go on
        runs.run_cancel(
            access=access_of(committed_world.owner, committed_world.workspace_a), run=run
        )
