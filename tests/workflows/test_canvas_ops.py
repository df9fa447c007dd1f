"""The canvas's edits (workflows/builder/canvas_ops.py) and its JSON endpoint: a batch of
operations is one new version, positions never change what runs, a stale base is refused with
the service's conflict message, and outsiders (404) and viewers (403) cannot edit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from core.exceptions import Conflict, ValidationFailed
from tenants.models import Membership, Role
from tenants.permissions import Access
from tests.helpers.personas import World, access_of, logged_in, make_user
from workflows import selectors, services
from workflows.builder import canvas_ops
from workflows.builder.layout import layout
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db

DEFINITION: dict[str, Any] = {
    "schema_version": 1,
    "steps": [
        {"id": "start", "type": "transform", "config": {"value": "x"}},
        {"id": "check", "type": "condition", "config": {"expression": "True"}},
        {"id": "yes", "type": "transform", "config": {"value": "yes"}},
    ],
    "edges": [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "yes", "branch": "true"},
    ],
}


@pytest.fixture
def workflow(owner_access: Access, in_alpha: None) -> Workflow:
    return services.workflow_create(access=owner_access, name="Canvas", definition=DEFINITION)


def test_layout_draws_placed_steps_where_they_are_and_branch_edges_from_their_ports() -> None:
    document = {
        **DEFINITION,
        "steps": [
            {**DEFINITION["steps"][0], "position": {"x": 300, "y": 10}},
            {**DEFINITION["steps"][1], "position": {"x": 40, "y": 160}},
            DEFINITION["steps"][2],  # not placed: laid out below the placed ones
        ],
    }
    diagram = layout(document)
    check = diagram.node("check")
    assert (diagram.node("start").x, check.x, check.y) == (300.0, 40.0, 160.0)
    assert diagram.node("yes").y > check.y + check.height
    assert [(p.branch, p.linked) for p in check.ports] == [("true", True), ("false", False)]
    true_edge = next(e for e in diagram.edges if e.branch == "true")
    assert true_edge.points[0] == (check.ports[0].x, check.y + check.height)
    assert [p.branch for p in diagram.node("start").ports] == [""]
    assert diagram.width >= 300 + diagram.node("start").width


def _apply(access: Access, workflow: Workflow, ops: list[Any], base: int = 1) -> Any:
    return canvas_ops.canvas_apply(access=access, workflow=workflow, base=base, ops=ops)


def test_a_batch_is_one_version_and_later_ops_name_added_steps(
    owner_access: Access, workflow: Workflow
) -> None:
    result = _apply(
        owner_access,
        workflow,
        [
            {"op": "add", "type": "transform", "position": {"x": 400, "y": 200}},
            {"op": "connect", "from": "check", "to": "$0", "branch": "false"},
        ],
    )
    assert result.version.number == 2
    assert result.added == ["transform_1"]
    definition = result.version.definition
    added = definition["steps"][-1]
    assert added["position"] == {"x": 400.0, "y": 200.0}
    assert added["config"] == {"value": "{{ input }}"}
    assert {"from": "check", "to": "transform_1", "branch": "false"} in definition["edges"]
    # Placing one step pins the others where the automatic layout drew them: nothing jumps.
    before = {n.id: (n.x, n.y) for n in layout(DEFINITION).nodes}
    for step in definition["steps"][:-1]:
        assert (step["position"]["x"], step["position"]["y"]) == pytest.approx(
            before[step["id"]], abs=0.1
        )
    assert result.version.note == "Canvas: 1 add, 1 connect"


def _without_positions(definition: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k != "position"} for s in definition["steps"]]


def test_moves_change_only_positions_and_layout_drops_them(
    owner_access: Access, workflow: Workflow
) -> None:
    moved = _apply(
        owner_access, workflow, [{"op": "move", "step": "yes", "position": {"x": 8, "y": 500}}]
    )
    assert _without_positions(moved.version.definition) == DEFINITION["steps"]
    assert moved.version.definition["edges"] == DEFINITION["edges"]
    diagram = layout(moved.version.definition)
    assert (diagram.node("yes").x, diagram.node("yes").y) == (8.0, 500.0)
    laid_out = _apply(owner_access, workflow, [{"op": "layout"}], base=2)
    assert laid_out.version.definition["steps"] == DEFINITION["steps"]
    # A negative position is clamped to the canvas.
    clamped = _apply(
        owner_access, workflow, [{"op": "move", "step": "yes", "position": {"x": -50, "y": 3}}], 3
    )
    positions = {s["id"]: s["position"] for s in clamped.version.definition["steps"]}
    assert positions["yes"] == {"x": 0.0, "y": 3.0}


def test_delete_disconnect_paste_and_restore(owner_access: Access, workflow: Workflow) -> None:
    deleted = _apply(owner_access, workflow, [{"op": "delete", "step": "check"}])
    assert [s["id"] for s in deleted.version.definition["steps"]] == ["start", "yes"]
    assert deleted.version.definition["edges"] == []  # not reconnected

    restored = _apply(owner_access, workflow, [{"op": "restore", "version": 1}], base=2)
    assert restored.version.definition == DEFINITION

    cut = _apply(
        owner_access,
        workflow,
        [{"op": "disconnect", "from": "check", "to": "yes", "branch": "true"}],
        3,
    )
    assert cut.version.definition["edges"] == [{"from": "start", "to": "check"}]

    steps = [s for s in DEFINITION["steps"] if s["id"] in ("check", "yes")]
    pasted = _apply(
        owner_access,
        workflow,
        [{"op": "paste", "steps": steps, "edges": DEFINITION["edges"]}],
        base=4,
    )
    assert pasted.added == ["check_copy_1", "yes_copy_1"]
    assert {"from": "check_copy_1", "to": "yes_copy_1", "branch": "true"} in (
        pasted.version.definition["edges"]
    )
    assert {"from": "start", "to": "check_copy_1"} not in pasted.version.definition["edges"]


def test_a_stale_base_is_refused_with_the_services_message(
    owner_access: Access, workflow: Workflow
) -> None:
    _apply(
        owner_access,
        workflow,
        [{"op": "layout"}, {"op": "move", "step": "yes", "position": {"x": 1, "y": 1}}],
    )
    with pytest.raises(Conflict, match="Someone saved version 2 since you opened version 1"):
        _apply(owner_access, workflow, [{"op": "delete", "step": "yes"}], base=1)
    assert workflow.versions.count() == 2


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([], "one or more operations"),
        ([{"op": "explode"}], "unknown operation “explode”"),
        ([{"op": "add", "type": "nope"}], "no step type “nope”"),
        ([{"op": "connect", "from": "start", "to": "check"}], "already connected"),
        ([{"op": "connect", "from": "start", "to": "$3"}], "has not added"),
        ([{"op": "move", "step": "ghost", "position": {"x": 1, "y": 1}}], "no step “ghost”"),
        ([{"op": "move", "step": "yes", "position": {"x": "a"}}], "a position is"),
        ([{"op": "restore", "version": 99}], "names a version"),
    ],
)
def test_bad_operations_say_what_is_wrong_and_save_nothing(
    owner_access: Access, workflow: Workflow, ops: list[Any], message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message):
        _apply(owner_access, workflow, ops)
    assert workflow.versions.count() == 1


# ------------------------------------------------------------------ ports

PORTS: dict[str, Any] = {
    "schema_version": 1,
    "steps": [
        {"id": "start", "type": "transform", "config": {"value": "x"}},
        {"id": "check", "type": "condition", "config": {"expression": "True"}},
        {
            "id": "route",
            "type": "router",
            "config": {
                "mode": "expression",
                "routes": [{"name": "sales"}, {"name": "support"}],
                "expression": "'sales'",
            },
        },
        {"id": "review", "type": "approval", "config": {"message": "OK?"}},
        {"id": "fan", "type": "parallel", "config": {}},
        {
            "id": "each",
            "type": "map",
            "config": {
                "items": "[1, 2]",
                "concurrency": 2,
                "node": {"type": "transform", "config": {"value": "{{ item }}"}},
            },
        },
        {"id": "a", "type": "transform", "config": {"value": "a"}},
        {"id": "b", "type": "transform", "config": {"value": "b"}},
        {"id": "c", "type": "code", "config": {"code": "def main(inputs):\n    return 1\n"}},
    ],
    "edges": [],
}


@pytest.fixture
def ported(owner_access: Access, in_alpha: None) -> Workflow:
    """Version 2 is PORTS: a draft (nothing is connected yet)."""
    workflow = services.workflow_create(access=owner_access, name="Ports", definition=DEFINITION)
    services.version_edit(
        access=owner_access,
        workflow=workflow,
        edit=lambda _latest: PORTS,
        based_on=1,
        allow_incomplete=True,
    )
    return workflow


def _edit(access: Access, workflow: Workflow, ops: list[Any], base: int = 2) -> Any:
    return canvas_ops.canvas_apply(access=access, workflow=workflow, base=base, ops=ops)


def _edges(result: Any) -> list[dict[str, Any]]:
    return list(result.version.definition["edges"])


@pytest.mark.parametrize(
    ("source", "port", "branch"),
    [
        ("check", "true", "true"),
        ("check", "false", "false"),
        ("route", "sales", "sales"),
        ("route", "support", "support"),
        ("review", "approved", "approved"),
        ("review", "rejected", "rejected"),
        ("start", "", None),
        ("each", "done", None),
    ],
)
def test_connect_from_each_labelled_port_saves_its_branch(
    owner_access: Access, ported: Workflow, source: str, port: str, branch: str | None
) -> None:
    result = _edit(
        owner_access, ported, [{"op": "connect", "from": source, "to": "a", "port": port}]
    )
    edge = {"from": source, "to": "a", **({"branch": branch} if branch else {})}
    assert _edges(result) == [edge]
    ports = [p.branch for p in layout(result.version.definition).node(source).ports]
    assert port in ports
    assert next(
        p for p in layout(result.version.definition).node(source).ports if p.branch == port
    ).linked


def test_a_parallel_step_has_one_labelled_port_per_branch_and_one_for_a_new_one(
    owner_access: Access, ported: Workflow
) -> None:
    assert [p.branch for p in layout(PORTS).node("fan").ports] == ["branch 1"]
    result = _edit(
        owner_access,
        ported,
        [
            {"op": "connect", "from": "fan", "to": "a", "port": "branch 1"},
            {"op": "connect", "from": "fan", "to": "b", "port": "branch 2"},
        ],
    )
    # Saved without a branch: the engine starts every outgoing edge of a parallel step.
    assert _edges(result) == [{"from": "fan", "to": "a"}, {"from": "fan", "to": "b"}]
    diagram = layout(result.version.definition)
    fan = diagram.node("fan")
    assert [(p.branch, p.linked, p.shows_label) for p in fan.ports] == [
        ("branch 1", True, True),
        ("branch 2", True, True),
        ("branch 3", False, True),
    ]
    # Each edge leaves from its own port.
    starts = [e.points[0][0] for e in diagram.edges if e.source == "fan"]
    assert starts == [fan.ports[0].x, fan.ports[1].x]
    # Disconnecting from a port removes that edge.
    cut = _edit(
        owner_access,
        ported,
        [{"op": "disconnect", "from": "fan", "to": "a", "port": "branch 1"}],
        3,
    )
    assert _edges(cut) == [{"from": "fan", "to": "b"}]


def test_the_map_body_is_a_port_that_takes_a_step_in_and_gives_it_back(
    owner_access: Access, ported: Workflow
) -> None:
    each = layout(PORTS).node("each")
    assert [(p.branch, p.linked) for p in each.ports] == [("body", True), ("done", False)]
    assert each.body == "transform"

    taken = _edit(
        owner_access, ported, [{"op": "connect", "from": "each", "to": "c", "port": "body"}]
    )
    definition = taken.version.definition
    assert "c" not in [s["id"] for s in definition["steps"]]
    body = next(s for s in definition["steps"] if s["id"] == "each")["config"]["node"]
    assert body == {"type": "code", "config": PORTS["steps"][8]["config"]}
    assert layout(definition).node("each").body == "code"

    out = _edit(owner_access, ported, [{"op": "disconnect", "from": "each", "port": "body"}], 3)
    assert out.added == ["code_1"]
    definition = out.version.definition
    assert "node" not in next(s for s in definition["steps"] if s["id"] == "each")["config"]
    assert next(s for s in definition["steps"] if s["id"] == "code_1")["type"] == "code"
    assert not layout(definition).node("each").ports[0].linked
    assert any("each" in p for p in selectors_problems(out))


def selectors_problems(result: Any) -> list[str]:
    return [str(p) for p in selectors.version_problems(result.version)]


@pytest.mark.parametrize(
    ("op", "message"),
    [
        ({"from": "check", "to": "a", "port": "maybe"}, "has no port “maybe” .*true, false"),
        ({"from": "check", "to": "a"}, "one of the branches of condition step “check”"),
        ({"from": "review", "to": "a", "branch": "true"}, "approved, rejected"),
        ({"from": "route", "to": "a", "port": "other"}, "sales, support"),
        ({"from": "start", "to": "a", "branch": "true"}, "has no branches"),
        ({"from": "start", "to": "a", "port": "yes"}, "has no port “yes”"),
        ({"from": "fan", "to": "a", "port": "branch x"}, "has no port “branch x”"),
        ({"from": "each", "to": "check", "port": "body"}, "condition step cannot be a map's body"),
    ],
)
def test_connect_refuses_a_port_the_source_does_not_have(
    owner_access: Access, ported: Workflow, op: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message):
        _edit(owner_access, ported, [{"op": "connect", **op}])
    assert ported.versions.count() == 2


def test_a_connected_step_cannot_become_a_map_body(owner_access: Access, ported: Workflow) -> None:
    with pytest.raises(ValidationFailed, match="“a” is connected to other steps"):
        _edit(
            owner_access,
            ported,
            [
                {"op": "connect", "from": "start", "to": "a"},
                {"op": "connect", "from": "each", "to": "a", "port": "body"},
            ],
        )


# ------------------------------------------------------------------ the endpoint


def _url(workflow: Workflow, slug: str = "alpha") -> str:
    return reverse("workflow_canvas", kwargs={"workspace_slug": slug, "workflow_id": workflow.pk})


def _post(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


@pytest.fixture
def saved(world: World) -> Workflow:
    with schema_context(world.workspace_a.schema_name):
        return services.workflow_create(
            access=access_of(world.owner, world.workspace_a), name="Canvas", definition=DEFINITION
        )


def _versions(world: World, workflow: Workflow) -> list[WorkflowVersion]:
    with schema_context(world.workspace_a.schema_name):
        return list(WorkflowVersion.objects.filter(workflow=workflow).order_by("number"))


def test_the_endpoint_saves_a_batch_and_answers_the_saved_version(
    world: World, owner_client: Client, saved: Workflow
) -> None:
    state = owner_client.get(_url(saved)).json()
    assert state["version"] == 1
    assert state["run"] is None
    assert state["can_edit"] is True

    # An incomplete draft is saved, with its problems.
    answer = _post(
        owner_client, _url(saved), {"base": 1, "ops": [{"op": "add", "type": "transform"}]}
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["version"] == 2
    assert body["added"] == ["transform_1"]
    assert any("transform_1" in p for p in body["problems"])

    stale = _post(owner_client, _url(saved), {"base": 1, "ops": [{"op": "layout"}]})
    assert stale.status_code == 409
    assert stale.json()["conflict"] is True
    assert "Reload to see their change" in stale.json()["error"]

    refused = _post(owner_client, _url(saved), {"ops": [{"op": "layout"}]})
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("base:")
    assert len(_versions(world, saved)) == 2


def test_outsiders_get_404_and_viewers_403(
    world: World, outsider_client: Client, saved: Workflow
) -> None:
    body = {"base": 1, "ops": [{"op": "layout"}]}
    assert outsider_client.get(_url(saved)).status_code == 404
    assert _post(outsider_client, _url(saved), body).status_code == 404
    assert _post(outsider_client, _url(saved, "bravo"), body).status_code == 404

    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    client = logged_in(viewer)
    assert client.get(_url(saved)).json()["can_edit"] is False
    assert _post(client, _url(saved), body).status_code == 403
    assert len(_versions(world, saved)) == 1
