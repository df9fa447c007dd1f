"""The builder's automatic diagram layout (workflows/builder/layout.py): layers, order, no
overlaps, edge routes and branch labels. Pure functions: no database."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from workflows.builder.layout import LAYER_GAP, NODE_HEIGHT, NODE_WIDTH, Diagram, layout


def _doc(steps: list[str], edges: list[tuple[str, ...]]) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "steps": [{"id": s, "type": "transform", "config": {"value": "x"}} for s in steps],
        "edges": [
            {"from": e[0], "to": e[1], **({"branch": e[2]} if len(e) > 2 else {})} for e in edges
        ],
    }


def _layer(diagram: Diagram, node_id: str) -> int:
    return diagram.node(node_id).layer


def _overlap(diagram: Diagram) -> list[tuple[str, str]]:
    clashes = []
    for a, b in combinations(diagram.nodes, 2):
        if (
            a.x < b.x + b.width
            and b.x < a.x + a.width
            and a.y < b.y + b.height
            and b.y < a.y + a.height
        ):
            clashes.append((a.id, b.id))
    return clashes


def test_a_chain_is_one_step_per_layer_top_to_bottom_in_one_column() -> None:
    diagram = layout(_doc(["a", "b", "c"], [("a", "b"), ("b", "c")]))
    assert [_layer(diagram, s) for s in "abc"] == [0, 1, 2]
    assert len({n.x for n in diagram.nodes}) == 1  # straight down
    assert diagram.node("b").y - diagram.node("a").y == NODE_HEIGHT + LAYER_GAP
    assert diagram.crossings == 0


def test_layers_follow_the_longest_path() -> None:
    # a → b → c → d and a shortcut a → d: d sits below c, not beside b.
    diagram = layout(_doc(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")]))
    assert _layer(diagram, "d") == 3
    shortcut = next(e for e in diagram.edges if (e.source, e.target) == ("a", "d"))
    # The long edge bends through the layers it crosses instead of cutting through b and c.
    assert len(shortcut.points) == 2 + 2 * 2
    for x, _y in shortcut.points[1:-1]:
        for node_id in ("b", "c"):
            node = diagram.node(node_id)
            assert not node.x <= x <= node.x + node.width


def test_a_branch_spreads_side_by_side_with_labels_between_the_layers() -> None:
    diagram = layout(
        _doc(
            ["check", "yes", "no", "done"],
            [("check", "yes", "true"), ("check", "no", "false"), ("yes", "done"), ("no", "done")],
        )
    )
    yes, no = diagram.node("yes"), diagram.node("no")
    assert yes.layer == no.layer == 1
    assert yes.y == no.y
    assert abs(yes.x - no.x) >= NODE_WIDTH  # next to each other, not stacked
    labels = {e.branch: (e.label_x, e.label_y) for e in diagram.edges if e.branch}
    assert set(labels) == {"true", "false"}
    check = diagram.node("check")
    for _x, y in labels.values():
        assert check.y + check.height < y < yes.y  # in the gap under the condition
    assert labels["true"][0] != labels["false"][0]
    # The join is centred under its two branches.
    assert abs(diagram.node("done").cx - (yes.cx + no.cx) / 2) < 1


def test_barycenter_ordering_removes_crossings_the_definition_order_would_have() -> None:
    # Written so that the definition order crosses: a1 → b2, a2 → b1.
    diagram = layout(
        _doc(
            ["root", "a1", "a2", "b1", "b2"],
            [("root", "a1"), ("root", "a2"), ("a1", "b2"), ("a2", "b1")],
        )
    )
    assert diagram.crossings == 0
    order = {n.id: n.order for n in diagram.nodes}
    assert (order["a1"] < order["a2"]) == (order["b2"] < order["b1"])


def test_no_two_nodes_overlap_on_a_wide_fan_out() -> None:
    steps = ["start"] + [f"s{i}" for i in range(10)] + ["join"]
    edges = [("start", f"s{i}") for i in range(10)] + [(f"s{i}", "join") for i in range(10)]
    diagram = layout(_doc(steps, edges))
    assert _overlap(diagram) == []
    assert diagram.width >= 10 * NODE_WIDTH
    assert all(n.x >= 0 and n.x + n.width <= diagram.width for n in diagram.nodes)
    assert all(n.y + n.height <= diagram.height for n in diagram.nodes)


def test_edges_start_under_their_source_and_end_on_top_of_their_target() -> None:
    diagram = layout(_doc(["a", "b", "c"], [("a", "b", "x"), ("a", "c", "y")]))
    for edge in diagram.edges:
        source, target = diagram.node(edge.source), diagram.node(edge.target)
        (x0, y0), (x1, y1) = edge.points[0], edge.points[-1]
        assert y0 == source.y + source.height
        assert source.x <= x0 <= source.x + source.width
        assert y1 == target.y
        assert target.x <= x1 <= target.x + target.width
        assert edge.path.startswith(f"M{x0:.1f},{y0:.1f}")
    starts = [e.points[0][0] for e in diagram.edges]
    assert starts[0] != starts[1]  # two edges leaving one node do not share a port


def test_long_names_are_shortened_in_the_box_but_kept_whole_for_the_tooltip() -> None:
    document = _doc(["a"], [])
    document["steps"][0]["name"] = "Summarise the customer's complete conversation history"
    node = layout(document).node("a")
    assert node.label.endswith("…")
    assert len(node.label) <= 24
    assert node.full_label == "Summarise the customer's complete conversation history"
    assert node.type_label == "Transform"


def test_broken_drafts_are_still_drawn() -> None:
    # A cycle, an edge to a step that does not exist, a self-loop and junk entries.
    document = _doc(
        ["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "a"), ("a", "ghost"), ("b", "b")]
    )
    document["steps"].append("not a step")
    document["edges"].append(42)
    diagram = layout(document)
    assert {n.id for n in diagram.nodes} == {"a", "b", "c"}
    assert len(diagram.edges) == 3  # the unknown endpoint and the self-loop are left out
    assert sorted(n.layer for n in diagram.nodes) == [0, 1, 2]
    assert _overlap(diagram) == []


def test_nothing_to_draw() -> None:
    documents: list[Any] = [None, {}, {"steps": []}, "text"]
    for document in documents:
        diagram = layout(document)
        assert diagram.nodes == ()
        assert diagram.width == 0
