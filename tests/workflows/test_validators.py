"""The definition validators (docs/workflows.md, "Validation"): each check accepts a good
definition and names the step and field of a bad one; `validate` reports every independent
problem at once and never raises, whatever it is given."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agents import services as agent_services
from core.exceptions import ValidationFailed
from tenants.permissions import Access
from tests.helpers.workflows import make_workflow
from workflows import validators
from workflows.validators import Issue

pytestmark = pytest.mark.django_db


def step(step_id: str, node_type: str = "transform", **config: Any) -> dict[str, Any]:
    if node_type == "transform" and not config:
        config = {"value": step_id}
    return {"id": step_id, "type": node_type, "config": config}


def flow(
    *steps: dict[str, Any],
    edges: list[tuple[str, ...]] | None = None,
    inputs: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A definition; edges as (from, to) or (from, to, branch)."""
    document: dict[str, Any] = {"schema_version": 1, "steps": list(steps)}
    if inputs is not None:
        document["inputs"] = inputs
    document["edges"] = [
        {"from": e[0], "to": e[1], **({"branch": e[2]} if len(e) > 2 else {})}
        for e in (edges or [])
    ]
    document.update(extra)
    return document


# The example of docs/workflows.md, with workspace-independent nodes.
TRIAGE = flow(
    step("classify", "transform", value={"urgent": "{{ contains(input.ticket, 'down') }}"}),
    step("is_urgent", "condition", expression="steps.classify.urgent"),
    step("page", "tool", tool="calculator", arguments={"expression": "1 + 1"}),
    step("reply", "transform", value="{{ input.ticket }} {{ steps.classify.urgent }}"),
    edges=[
        ("classify", "is_urgent"),
        ("is_urgent", "page", "true"),
        ("is_urgent", "reply", "false"),
    ],
    inputs={"ticket": {"type": "string", "required": True}},
    output={"answer": "{{ steps.reply }}"},
)


def texts(issues: list[Issue]) -> list[str]:
    return [str(i) for i in issues]


def test_the_documented_shape_is_valid(in_alpha: None) -> None:
    assert validators.validate(TRIAGE) == []
    validators.validate_or_raise(TRIAGE)


# ------------------------------------------------------------------ (1) schema


def test_schema_accepts_every_node_type_with_its_config() -> None:
    document = flow(
        step("a", "llm", model="offline:demo", prompt="hi", temperature=0.2),
        step(
            "b",
            "router",
            mode="expression",
            routes=[{"name": "x"}, {"name": "y"}],
            expression="'x'",
        ),
        step("c", "join", mode="n", n=1),
        step(
            "d",
            "map",
            items="[1, 2]",
            concurrency=2,
            node={"type": "transform", "config": {"value": "{{ item }}"}},
        ),
        step("e", "approval", message="ok?", approvers="admins"),
        step("f", "webhook_wait", timeout_seconds=60),
        step("g", "parallel"),
    )
    assert validators.check_schema(document) == []


def test_schema_names_the_step_and_field_of_each_problem() -> None:
    document = flow(
        step("classify", "llm", prompt="Hi", temperature=5, colour="red"),
        {"id": "9lives", "type": "transform", "config": {"value": 1}},
        {"id": "x", "type": "teleport", "config": {}},
        step("is_urgent", "condition"),
    )
    assert texts(validators.check_schema(document)) == [
        "steps[1] (9lives).id: '9lives' is not a valid step id: start with a letter, use "
        "letters, digits, _ and - (at most 64)",
        "steps[2] (x).type: unknown step type 'teleport' (one of agent, approval, code, "
        "condition, join, llm, map, parallel, router, sub_workflow, tool, transform, "
        "webhook_wait)",
        "steps[0] (classify).config.model: is required",
        "steps[0] (classify).config.colour: is not a field here (expected: max_tokens, model, "
        "output_schema, prompt, system, temperature)",
        "steps[0] (classify).config.temperature: must be at most 2",
        "steps[3] (is_urgent).config.expression: is required",
    ]


def test_schema_checks_a_map_body_as_its_own_node_type_and_mode_dependent_fields() -> None:
    document = flow(
        step("each", "map", items="[1]", node={"type": "condition", "config": {}}),
        step("each2", "map", items="[1]", node={"type": "llm", "config": {"prompt": "x"}}),
        step("route", "router", mode="llm", routes=[{"name": "a"}, {"name": "a"}]),
        step("wait", "join", mode="n"),
        inputs={"count": {"type": "integer", "default": "three"}},
    )
    assert texts(validators.check_schema(document)) == [
        "inputs.count.default: must be a whole number, like the input's type",
        "steps[0] (each).config.node.type: 'condition' cannot be a map body (use one of agent, "
        "llm, tool, transform, code, sub_workflow)",
        "steps[1] (each2).config.node.config.model: is required",
        "steps[2] (route).config.prompt: is required when mode is llm",
        "steps[2] (route).config.routes: the route 'a' is listed twice",
        "steps[3] (wait).config.n: is required when mode is n",
    ]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], "definition: must be a JSON object with schema_version and steps, not a list"),
        ("steps", "definition: must be a JSON object with schema_version and steps, not a string"),
        (None, "definition: must be a JSON object with schema_version and steps, not null"),
        ({}, "steps: is required"),
        ({"schema_version": 1, "steps": "all of them"}, "steps: must be a list, not a string"),
        ({"schema_version": 1, "steps": []}, "steps: needs at least one step"),
        ({"schema_version": 1, "steps": [7]}, "steps[0]: must be an object, not a whole number"),
        ({"schema_version": 1, "steps": [{"id": "a"}]}, "steps[0] (a).type: is required"),
        ({"schema_version": 2, "steps": [step("a")]}, "schema_version: must be 1"),
        (
            {"schema_version": 1, "steps": [step("a")], "edges": [["a", "b"]]},
            "edges[0]: must be an object, not a list",
        ),
    ],
)
def test_validate_never_raises_on_garbage_and_says_what_is_wrong(
    in_alpha: None, document: Any, expected: str
) -> None:
    assert expected in texts(validators.validate(document))


def test_validate_stops_after_a_shape_problem_but_reports_every_independent_one(
    in_alpha: None,
) -> None:
    # A step without a type: the graph cannot be checked, only the schema is reported.
    shapeless = flow({"id": "a", "config": {}}, step("b"), edges=[("a", "nowhere")])
    assert texts(validators.validate(shapeless)) == ["steps[0] (a).type: is required"]

    # Independent problems of a well-shaped document all come at once.
    broken = copy.deepcopy(TRIAGE)
    broken["steps"][1]["config"] = {}
    broken["steps"][3]["config"]["value"] = "{{ inptu.ticket }}"
    broken["edges"].append({"from": "reply", "to": "ghost"})
    issues = texts(validators.validate(broken))
    assert issues == [
        "steps[1] (is_urgent).config.expression: is required",
        "edges[3].to: there is no step 'ghost'",
        "steps[3] (reply).config.value: {{ inptu.ticket }} uses unknown name 'inptu' (names "
        "are index, input, item, run, steps)",
    ]
    with pytest.raises(ValidationFailed) as excinfo:
        validators.validate_or_raise(broken)
    assert excinfo.value.fields == {"definition": issues}
    assert "is_urgent" in excinfo.value.message
    assert "2 more" in excinfo.value.message


# ------------------------------------------------------------------ (2) unique ids


def test_unique_ids() -> None:
    assert validators.check_unique_ids(TRIAGE) == []
    document = flow(step("a"), step("b"), step("a"), edges=[("a", "b")])
    assert texts(validators.check_unique_ids(document)) == [
        "steps[2] (a).id: 'a' is already the id of steps[0]"
    ]


# ------------------------------------------------------------------ (3) edges


def test_edges_connect_existing_steps_with_the_branches_of_their_source() -> None:
    assert validators.check_edges(TRIAGE) == []
    document = flow(
        step("start"),
        step("check", "condition", expression="True"),
        step(
            "route",
            "router",
            mode="expression",
            expression="'big'",
            routes=[{"name": "big"}, {"name": "small"}],
        ),
        step("ok", "approval", message="ok?"),
        step("end"),
        edges=[
            ("start", "check"),
            ("check", "route", "maybe"),
            ("route", "ok", "huge"),
            ("ok", "end"),
            ("start", "ghost"),
            ("phantom", "end"),
            ("end", "start", "true"),
            ("start", "check"),
        ],
    )
    assert texts(validators.check_edges(document)) == [
        "edges[1].branch: 'maybe' is not a branch of condition step 'check' (its branches: "
        "true, false)",
        "edges[2].branch: 'huge' is not a branch of router step 'route' (its branches: big, small)",
        "edges[3]: leaves approval step 'ok', so it needs a branch (approved or rejected)",
        "edges[4].to: there is no step 'ghost'",
        "edges[5].from: there is no step 'phantom'",
        "edges[6].branch: 'end' is a transform step; only edges leaving a condition, router or "
        "approval step have a branch",
        "edges[7]: repeats edges[0]",
    ]


# ------------------------------------------------------------------ (4) acyclic


def test_no_cycles_outside_a_map() -> None:
    looped_by_map = flow(
        step("list", "transform", value=[1, 2, 3]),
        step(
            "each",
            "map",
            items="steps.list",
            node={"type": "transform", "config": {"value": "{{ item * 2 }}"}},
        ),
        edges=[("list", "each")],
    )
    assert validators.check_acyclic(looped_by_map) == []
    document = flow(
        step("start"),
        step("a"),
        step("b"),
        step("c"),
        edges=[("start", "a"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "c")],
    )
    assert texts(validators.check_acyclic(document)) == [
        "steps[1] (a): is in a cycle (a → b → c → a); workflows cannot loop back, repeat work "
        "with a map step instead",
        "steps[3] (c): is in a cycle (c → c); workflows cannot loop back, repeat work with a "
        "map step instead",
    ]


# ------------------------------------------------------------------ (5) single entry


def test_exactly_one_entry_step() -> None:
    assert validators.check_single_entry(TRIAGE) == []
    two = flow(step("a"), step("b"), step("c"), edges=[("a", "c")])
    assert texts(validators.check_single_entry(two)) == [
        "steps[1] (b): has no incoming edge, like 'a': a workflow starts at exactly one step "
        "(entry steps now: a, b); connect it after another step"
    ]
    none = flow(step("a"), step("b"), edges=[("a", "b"), ("b", "a")])
    assert texts(validators.check_single_entry(none)) == [
        "edges: every step has an incoming edge, so no step can start the run"
    ]


# ------------------------------------------------------------------ (6) reachable


def test_every_step_reachable_from_the_entry() -> None:
    assert validators.check_reachable(TRIAGE) == []
    island = flow(
        step("start"),
        step("next"),
        step("x"),
        step("y"),
        edges=[("start", "next"), ("x", "y"), ("y", "x")],
    )
    assert texts(validators.check_reachable(island)) == [
        "steps[2] (x): cannot be reached from the entry step 'start'",
        "steps[3] (y): cannot be reached from the entry step 'start'",
    ]


# ------------------------------------------------------------------ (7) references


def test_references_read_upstream_steps_declared_inputs_and_items_in_map_bodies() -> None:
    assert validators.check_references(TRIAGE) == []
    document = flow(
        step("start", "transform", value="{{ input.ticket }}"),
        step("check", "condition", expression="steps.later.done or steps['start']"),
        step(
            "each",
            "map",
            items="input.tickets",
            node={"type": "transform", "config": {"value": "{{ item }} {{ steps.each }}"}},
        ),
        step("later", "transform", value={"text": "{{ index }}", "again": "{{ steps.ghost }}"}),
        edges=[("start", "check"), ("check", "each", "true"), ("each", "later")],
        inputs={"ticket": {"type": "string"}},
        output={"all": "{{ steps.later }}", "bad": "{{ steps.nope }}"},
    )
    assert texts(validators.check_references(document)) == [
        "steps[1] (check).config.expression: reads steps.later, but 'later' does not run "
        "before 'check' (connect it upstream or read another step)",
        "steps[2] (each).config.items: reads input.tickets, which is not one of the workflow's "
        "inputs (declared: ticket)",
        "steps[2] (each).config.node.config.value: reads its own output (steps.each)",
        "steps[3] (later).config.value.text: uses 'index', which exists only inside a map body",
        "steps[3] (later).config.value.again: reads steps.ghost, but there is no such step",
        "output.bad: reads steps.nope, but there is no such step",
    ]


# ------------------------------------------------------------------ (8) expressions


def test_expressions_and_templates_parse() -> None:
    assert validators.check_expressions(TRIAGE) == []
    document = flow(
        step("start", "transform", value={"list": ["{{ upper(input.x) }}", "{{ open('f') }}"]}),
        step("check", "condition", expression="input.x ==="),
        step("say", "llm", model="offline:demo", prompt="Hello {{ input.name"),
        step("sneak", "condition", expression="input.__class__"),
        edges=[("start", "check"), ("check", "say", "true"), ("check", "sneak", "false")],
    )
    assert texts(validators.check_expressions(document)) == [
        "steps[0] (start).config.value.list[1]: {{ open('f') }} calls something that is not a "
        "known function (abs, bool, coalesce, contains, default, endswith, float, int, join, "
        "json, keys, len, lower, max, min, replace, round, sorted, split, startswith, str, "
        "strip, sum, upper, values)",
        "steps[1] (check).config.expression: is not a valid expression (invalid syntax)",
        "steps[2] (say).config.prompt: has a '{{' without its '}}' (or the reverse)",
        "steps[3] (sneak).config.expression: reads '__class__'; names starting with _ are not "
        "allowed",
    ]


# ------------------------------------------------------------------ (9) tools, agents, models


def test_tools_exist_and_get_their_required_arguments() -> None:
    assert validators.check_tools(TRIAGE) == []
    document = flow(
        step("fetch", "tool", tool="http_request", arguments={"method": "GET"}),
        step("shell", "tool", tool="shell", arguments={"cmd": "rm -rf /"}),
        step("each", "map", items="[1]", node={"type": "tool", "config": {"tool": "nope"}}),
        edges=[("fetch", "shell"), ("shell", "each")],
    )
    issues = texts(validators.check_tools(document))
    assert (
        issues[0] == "steps[0] (fetch).config.arguments.url: is required by the http_request tool"
    )
    assert issues[1].startswith("steps[1] (shell).config.tool: there is no tool 'shell' (tools: ")
    assert "calculator" in issues[1]
    assert issues[2].startswith("steps[2] (each).config.node.config.tool: there is no tool 'nope'")
    assert len(issues) == 3


def test_agents_exist_in_this_workspace_and_are_not_archived(
    in_alpha: None, owner_access: Access
) -> None:
    agent_services.agent_create(access=owner_access, name="Support triage", model="offline:demo")
    old = agent_services.agent_create(access=owner_access, name="Old bot", model="offline:demo")
    agent_services.agent_archive(access=owner_access, agent_id=old.pk)
    good = flow(step("reply", "agent", agent="support TRIAGE", prompt="hi"))  # saving binds it
    assert validators.check_agents(good) == []
    bad = flow(
        step("reply", "agent", agent="Old bot", prompt="hi"),
        step("other", "agent", agent="Nobody", prompt="hi"),
        step("held", "agent", agent_id=old.pk, agent="Old bot", prompt="hi"),
        step("gone", "agent", agent_id=987654, agent="Deleted bot", prompt="hi"),
        step("blank", "agent", prompt="hi"),
        edges=[("reply", "other"), ("other", "held"), ("held", "gone"), ("gone", "blank")],
    )
    assert texts(validators.check_agents(bad)) == [
        "steps[0] (reply).config.agent: the agent 'Old bot' is archived; choose another agent",
        "steps[1] (other).config.agent: there is no agent named 'Nobody' in this workspace",
        "steps[2] (held).config.agent_id: the agent 'Old bot' is archived; choose another agent",
        "steps[3] (gone).config.agent_id: there is no agent with id 987654 in this workspace "
        "(it was “Deleted bot”); choose the agent again",
        "steps[4] (blank).config.agent_id: is required: choose the agent this step asks",
    ]


def test_agents_of_another_workspace_are_not_found(
    workspace_b: Any, owner_access: Access, in_alpha: None
) -> None:
    agent_services.agent_create(access=owner_access, name="Alpha bot", model="offline:demo")
    from django_tenants.utils import schema_context

    with schema_context(workspace_b.schema_name):
        issues = validators.check_agents(flow(step("r", "agent", agent="Alpha bot", prompt="x")))
    assert texts(issues) == [
        "steps[0] (r).config.agent: there is no agent named 'Alpha bot' in this workspace"
    ]


def test_provider_models_name_a_known_provider(in_alpha: None) -> None:
    good = flow(
        step("a", "llm", model="offline:demo", prompt="x"),
        step("b", "llm", model="default", prompt="x"),  # an alias, resolved when it runs
        edges=[("a", "b")],
    )
    assert validators.check_models(good) == []
    bad = flow(step("a", "llm", model="gpt:4", prompt="x"))
    assert texts(validators.check_models(bad)) == [
        "steps[0] (a).config.model: 'gpt:4' is neither a model alias of this workspace nor "
        "provider:model (providers: offline, anthropic, openai, openai_compatible)"
    ]


# ------------------------------------------------------------------ (10) sub-workflows


def test_sub_workflows_exist_and_have_the_version_they_pin(in_alpha: None) -> None:
    make_workflow(flow(step("only")), name="Child")
    archived = make_workflow(flow(step("only")), name="Gone")
    archived.archived_at = archived.created_at
    archived.save(update_fields=["archived_at"])
    good = flow(
        step("a", "sub_workflow", workflow="Child"),
        step("b", "sub_workflow", workflow="Child", version=1),
        edges=[("a", "b")],
    )
    assert validators.check_sub_workflows(good) == []
    bad = flow(
        step("a", "sub_workflow", workflow="Child", version=7),
        step("b", "sub_workflow", workflow="Gone"),
        step(
            "c",
            "map",
            items="[1]",
            node={"type": "sub_workflow", "config": {"workflow": "Missing"}},
        ),
        edges=[("a", "b"), ("b", "c")],
    )
    assert texts(validators.check_sub_workflows(bad)) == [
        "steps[0] (a).config.version: 'Child' has no version 7",
        "steps[1] (b).config.workflow: there is no active workflow named 'Gone' here",
        "steps[2] (c).config.node.config.workflow: there is no active workflow named 'Missing' "
        "here",
    ]


# ------------------------------------------------------------------ (11) limits


def test_limits_come_from_the_plan(settings: Any) -> None:
    settings.WORKFLOW_MAX_STEPS = 4
    settings.WORKFLOW_MAX_FAN_OUT = 2
    settings.WORKFLOW_MAX_MAP_CONCURRENCY = 3
    settings.WORKFLOW_MAX_MAP_ITEMS = 2
    assert validators.check_limits(TRIAGE) == []
    document = flow(
        step("fan", "parallel"),
        step("a"),
        step("b"),
        step("c"),
        step(
            "each",
            "map",
            items="[1, 2, 3]",
            concurrency=5,
            node={"type": "transform", "config": {"value": "{{ item }}"}},
        ),
        edges=[("fan", "a"), ("fan", "b"), ("fan", "c"), ("a", "each")],
    )
    assert texts(validators.check_limits(document)) == [
        "steps: has 5 steps; this workspace's plan allows 4",
        "steps[0] (fan): has 3 outgoing edges; this workspace's plan allows 2",
        "steps[4] (each).config.concurrency: is 5; this workspace's plan allows 3",
        "steps[4] (each).config.items: lists 3 items; this workspace's plan allows 2",
    ]


def test_plan_limits_default_to_the_platform_settings(settings: Any) -> None:
    from workflows.limits import Limits, plan_limits

    assert plan_limits() == Limits(100, 20, 10, 1000)
    settings.WORKFLOW_LIMITS = {**settings.WORKFLOW_LIMITS, "max_steps": 7}
    assert plan_limits().max_steps == 7
