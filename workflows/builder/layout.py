"""Automatic layout of a workflow definition as a top-to-bottom layered diagram (Sugiyama style),
rendered by the builder as server-side SVG.

    diagram = layout(version.definition)
    diagram.width, diagram.height, diagram.nodes[0].x, diagram.edges[0].path

Steps: cycles are broken by reversing DFS back edges (a valid definition has none, but drafts
and imports are drawn before they are validated); layers by longest path from the sources;
edges longer than one layer get dummy nodes so they route around real ones; nodes are ordered
within their layers by barycenter sweeps (down and up, keeping the order with the fewest
crossings); x positions pull each node towards the mean of its neighbours, with overlaps
resolved exactly by isotonic regression (pool adjacent violators) so the order is kept.

Steps placed on the canvas keep their `position` (`{"x", "y"}`, the box's top-left corner):
once a document has any, those steps are drawn where they were put, steps without one are laid
out automatically below them, and edges run straight from their source's port to their
target. Positions never change what runs.

Each box has its output ports (`step_ports`: `true`/`false`, `approved`/`rejected`, each
router route, a parallel step's `branch 1`, `branch 2`, … plus one for a new branch, a map's
`body` and `done`; one unlabelled port otherwise) along its bottom border and one input port
on top; an edge leaves from its port (`edge_ports`).

The function never raises on a malformed document: unknown edge endpoints and non-dict steps
are ignored, and an empty document gives an empty diagram.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from workflows.definition import NODE_TYPES

NODE_WIDTH = 184.0
NODE_HEIGHT = 56.0
DUMMY_WIDTH = 16.0
NODE_GAP = 28.0  # horizontal space between neighbours in a layer
LAYER_GAP = 64.0  # vertical space between layers
MARGIN = 16.0
SWEEPS = 12
LABEL_MAX = 24
ROOM_X = 400.0
ROOM_Y = 240.0


@dataclass(frozen=True)
class Port:
    branch: str  # "" for a step without branches
    x: float
    y: float
    linked: bool  # an edge leaves from it (or, for a map's `body`, the map has a body)
    named_on_edge: bool = True  # the edge from it carries the name (a saved branch)

    @property
    def label(self) -> str:
        """The pill's text: a parallel step's ports show their number only (room is short)."""
        prefix = parallel_port(0)[:-1]
        return self.branch[len(prefix) :] if self.branch.startswith(prefix) else self.branch

    @property
    def label_width(self) -> float:
        return 20.0 if len(self.label) <= 2 else 44.0

    @property
    def shows_label(self) -> bool:
        """The port's pill is drawn unless the edge leaving it already says the name."""
        return bool(self.branch) and not (self.linked and self.named_on_edge)

    @property
    def label_left(self) -> float:
        return self.x - self.label_width / 2

    @property
    def label_top(self) -> float:
        return self.y + 8

    @property
    def text_y(self) -> float:
        return self.y + 18


@dataclass(frozen=True)
class NodeBox:
    id: str
    type: str
    type_label: str
    label: str  # shortened to fit the box
    full_label: str
    x: float  # top-left corner
    y: float
    width: float
    height: float
    layer: int
    order: int
    branches: tuple[str, ...] = ()  # the output ports' names, left to right
    linked: frozenset[str] = frozenset()  # the ports edges leave from
    body: str = ""  # a map's body step type
    map_body: bool = False  # the step's type may be a map's body

    @property
    def ports(self) -> tuple[Port, ...]:
        names = self.branches or ("",)
        bottom = self.y + self.height
        unnamed = self.type in ("parallel", "map")  # their edges are saved without a branch
        return tuple(
            Port(
                name,
                self.x + self.width * (i + 1) / (len(names) + 1),
                bottom,
                name in self.linked,
                named_on_edge=not unnamed,
            )
            for i, name in enumerate(names)
        )

    def port_x(self, branch: str) -> float | None:
        return next((p.x for p in self.ports if p.branch == branch and branch), None)

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2

    # Where the template draws the two text lines and the type stripe.
    @property
    def text_x(self) -> float:
        return self.x + 16

    @property
    def name_y(self) -> float:
        return self.y + 24

    @property
    def meta_y(self) -> float:
        return self.y + 42

    @property
    def mark_x(self) -> float:
        """The centre of the "has problems" mark, in the box's top-right corner."""
        return self.x + self.width - 12

    @property
    def mark_y(self) -> float:
        return self.y + 12

    @property
    def run_x(self) -> float:
        """Where the canvas writes the last run's state: right-aligned just above the box."""
        return self.x + self.width - 2

    @property
    def run_y(self) -> float:
        return self.y - 5

    @property
    def meta(self) -> str:
        return _shorten(f"{self.type_label} · {self.id}", 28)


@dataclass(frozen=True)
class EdgePath:
    source: str
    target: str
    branch: str
    points: tuple[tuple[float, float], ...]  # source port, bends (dummy nodes), target port
    path: str  # SVG path data: cubic curves through the points
    label_x: float
    label_y: float

    @property
    def label_width(self) -> float:
        return 7.0 * len(self.branch) + 12

    @property
    def label_left(self) -> float:
        return self.label_x - self.label_width / 2

    @property
    def label_top(self) -> float:
        return self.label_y - 9


@dataclass(frozen=True)
class Diagram:
    nodes: tuple[NodeBox, ...]
    edges: tuple[EdgePath, ...]
    width: float
    height: float
    crossings: int
    layers: tuple[tuple[str, ...], ...] = field(default=())  # real node ids per layer, in order

    def node(self, node_id: str) -> NodeBox:
        return next(n for n in self.nodes if n.id == node_id)

    # The canvas draws the diagram with room to the right and below, to drop steps into.
    @property
    def room_width(self) -> float:
        return self.width + ROOM_X

    @property
    def room_height(self) -> float:
        return self.height + ROOM_Y


@dataclass
class _Vertex:
    key: str
    real: bool
    width: float
    layer: int = 0
    x: float = 0.0


def _shorten(text: str, limit: int = LABEL_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def step_branches(step: dict[str, Any]) -> tuple[str, ...]:
    """The branches an edge leaving `step` may be on: its type's fixed ones (a condition's
    `true`/`false`, an approval's `approved`/`rejected`) or a router's route names."""
    if step.get("type") == "router":
        config = step.get("config")
        routes = config.get("routes") if isinstance(config, dict) else None
        if not isinstance(routes, list):
            return ()
        return tuple(
            str(r["name"]) for r in routes if isinstance(r, dict) and isinstance(r.get("name"), str)
        )
    node = NODE_TYPES.get(str(step.get("type")))
    return node.branches if node else ()


MAP_BODY_PORT = "body"
MAP_NEXT_PORT = "done"


def parallel_port(number: int) -> str:
    return f"branch {number}"


def step_ports(step: dict[str, Any], outgoing: int = 0) -> tuple[str, ...]:
    """The canvas's output ports of `step`, left to right (`()`: one unlabelled port). Its
    branches for a condition, router or approval; for a parallel step with `outgoing` edges,
    one per branch and one more for a new branch (`branch 1` … `branch N+1`: the edges are
    saved without a branch, the engine starts them all); for a map, `body` (the step it runs
    per item, kept in its config) and `done` (where the run goes once every item is done)."""
    node_type = step.get("type")
    if node_type == "parallel":
        return tuple(parallel_port(n) for n in range(1, outgoing + 2))
    if node_type == "map":
        return (MAP_BODY_PORT, MAP_NEXT_PORT)
    return step_branches(step)


def port_branch(step: dict[str, Any], port: str) -> str | None:
    """The branch an edge drawn from `port` of `step` is saved with ("" for none), or None if
    `step` has no such port (a map's `body` is not an edge: the caller handles it)."""
    node_type = step.get("type")
    if node_type == "parallel":
        prefix = parallel_port(0)[:-1]
        number = port[len(prefix) :]
        return "" if port.startswith(prefix) and number.isdigit() and int(number) > 0 else None
    if node_type == "map":
        return "" if port == MAP_NEXT_PORT else None
    branches = step_branches(step)
    if not branches:
        return "" if port == "" and node_type != "router" else None
    return port if port in branches else None


def map_body_type(step: dict[str, Any]) -> str:
    """The type of a map step's body ("" when it has none)."""
    config = step.get("config")
    body = config.get("node") if isinstance(config, dict) else None
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else ""


def edge_ports(steps: list[dict[str, Any]], edges: list[tuple[str, str, str]]) -> list[str]:
    """The port each edge leaves from: its branch, or for a parallel step's edges `branch 1`,
    `branch 2`, … in definition order, and `done` for a map's."""
    types = {s["id"]: s.get("type") for s in steps}
    counts: dict[str, int] = {}
    ports = []
    for source, _target, branch in edges:
        if types.get(source) == "parallel":
            counts[source] = counts.get(source, 0) + 1
            ports.append(parallel_port(counts[source]))
        elif types.get(source) == "map":
            ports.append(MAP_NEXT_PORT)
        else:
            ports.append(branch)
    return ports


def position_of(step: dict[str, Any]) -> tuple[float, float] | None:
    """Where the canvas put the step (its box's top-left corner), if it did."""
    position = step.get("position")
    if not isinstance(position, dict):
        return None
    x, y = position.get("x"), position.get("y")
    if isinstance(x, bool) or isinstance(y, bool):
        return None
    if not isinstance(x, int | float) or not isinstance(y, int | float):
        return None
    return max(float(x), 0.0), max(float(y), 0.0)


def _graph(document: Any) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    if not isinstance(document, dict):
        return [], []
    steps: list[dict[str, Any]] = []
    seen: set[str] = set()
    for raw in document.get("steps") or []:
        if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"] not in seen:
            seen.add(raw["id"])
            steps.append(raw)
    edges: list[tuple[str, str, str]] = []
    for raw in document.get("edges") or []:
        if not isinstance(raw, dict):
            continue
        source, target = raw.get("from"), raw.get("to")
        if source in seen and target in seen and source != target:
            branch = raw.get("branch")
            edges.append((str(source), str(target), branch if isinstance(branch, str) else ""))
    return steps, edges


def _acyclic(ids: list[str], edges: list[tuple[str, str, str]]) -> set[int]:
    """Indexes of the edges to reverse so that the graph has no cycle (DFS back edges)."""
    out: dict[str, list[int]] = {i: [] for i in ids}
    for index, (source, _target, _branch) in enumerate(edges):
        out[source].append(index)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    reversed_edges: set[int] = set()
    for root in ids:
        if root in state:
            continue
        state[root] = 1
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, position = stack[-1]
            if position < len(out[node]):
                stack[-1] = (node, position + 1)
                index = out[node][position]
                target = edges[index][1]
                if state.get(target) == 1:
                    reversed_edges.add(index)
                elif target not in state:
                    state[target] = 1
                    stack.append((target, 0))
            else:
                state[node] = 2
                stack.pop()
    return reversed_edges


def _longest_path_layers(ids: list[str], arcs: list[tuple[str, str]]) -> dict[str, int]:
    """Sources on layer 0; every other node one below its lowest predecessor (Kahn order)."""
    preds: dict[str, list[str]] = {i: [] for i in ids}
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for source, target in arcs:
        preds[target].append(source)
        succs[source].append(target)
    indegree = {i: len(preds[i]) for i in ids}
    layer = dict.fromkeys(ids, 0)
    ready = [i for i in ids if indegree[i] == 0]
    while ready:
        node = ready.pop(0)
        for target in succs[node]:
            layer[target] = max(layer[target], layer[node] + 1)
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return layer


def _crossings(
    layers: list[list[str]], down: dict[str, list[str]], position: dict[str, int]
) -> int:
    total = 0
    for upper in layers[:-1]:
        pairs = [(position[u], position[v]) for u in upper for v in down[u]]
        pairs.sort()
        for i in range(len(pairs)):
            for j in range(i + 1, len(pairs)):
                if pairs[i][0] < pairs[j][0] and pairs[i][1] > pairs[j][1]:
                    total += 1
    return total


def _order(
    layers: list[list[str]], down: dict[str, list[str]], up: dict[str, list[str]]
) -> tuple[list[list[str]], int]:
    def positions(current: list[list[str]]) -> dict[str, int]:
        return {key: index for layer in current for index, key in enumerate(layer)}

    best = [list(layer) for layer in layers]
    best_crossings = _crossings(best, down, positions(best))
    current = [list(layer) for layer in layers]
    for sweep in range(SWEEPS):
        if best_crossings == 0:
            break
        indexes = range(1, len(current)) if sweep % 2 == 0 else range(len(current) - 2, -1, -1)
        neighbours = up if sweep % 2 == 0 else down  # towards the layer just fixed
        for index in indexes:
            pos = positions(current)

            def barycenter(
                key: str, pos: dict[str, int] = pos, neighbours: dict[str, list[str]] = neighbours
            ) -> float:
                linked = [pos[n] for n in neighbours[key]]
                return sum(linked) / len(linked) if linked else float(pos[key])

            # sorted() is stable: ties keep their current order.
            current[index] = sorted(current[index], key=barycenter)
        count = _crossings(current, down, positions(current))
        if count < best_crossings:
            best, best_crossings = [list(layer) for layer in current], count
    return best, best_crossings


def _place(desired: list[float], widths: list[float]) -> list[float]:
    """Centres as close as possible (least squares) to `desired`, keeping the order and at
    least half-widths + NODE_GAP between neighbours: isotonic regression on x_i - offset_i."""
    offsets = [0.0]
    for left, right in itertools.pairwise(widths):
        offsets.append(offsets[-1] + (left + right) / 2 + NODE_GAP)
    targets = [d - o for d, o in zip(desired, offsets, strict=True)]
    blocks: list[list[float]] = []  # [mean, count]
    for value in targets:
        blocks.append([value, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            previous = blocks[-1]
            total = previous[1] + count
            previous[0] = (previous[0] * previous[1] + mean * count) / total
            previous[1] = total
    values: list[float] = []
    for mean, count in blocks:
        values.extend([mean] * int(count))
    return [v + o for v, o in zip(values, offsets, strict=True)]


def _coordinates(
    layers: list[list[str]],
    vertices: dict[str, _Vertex],
    down: dict[str, list[str]],
    up: dict[str, list[str]],
) -> None:
    for layer in layers:
        centres = _place([0.0] * len(layer), [vertices[k].width for k in layer])
        for key, x in zip(layer, centres, strict=True):
            vertices[key].x = x
    for sweep in range(8):
        indexes = range(1, len(layers)) if sweep % 2 == 0 else range(len(layers) - 2, -1, -1)
        neighbours = up if sweep % 2 == 0 else down
        for index in indexes:
            layer = layers[index]
            desired = []
            for key in layer:
                linked = [vertices[n].x for n in neighbours[key]]
                desired.append(sum(linked) / len(linked) if linked else vertices[key].x)
            centres = _place(desired, [vertices[k].width for k in layer])
            for key, x in zip(layer, centres, strict=True):
                vertices[key].x = x


def _curve(points: list[tuple[float, float]]) -> str:
    (x0, y0), rest = points[0], points[1:]
    parts = [f"M{x0:.1f},{y0:.1f}"]
    previous = points[0]
    for x, y in rest:
        mid = (previous[1] + y) / 2
        parts.append(f"C{previous[0]:.1f},{mid:.1f} {x:.1f},{mid:.1f} {x:.1f},{y:.1f}")
        previous = (x, y)
    return " ".join(parts)


def _bezier_mid(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """The point at t=0.5 of the vertical-tangent cubic from a to b (what `_curve` draws)."""
    return (a[0] + b[0]) / 2, (a[1] + b[1]) / 2


def _spread(count: int, centre: float, width: float) -> list[float]:
    if count <= 1:
        return [centre]
    span = min(width * 0.6, 24.0 * (count - 1))
    return [centre - span / 2 + span * i / (count - 1) for i in range(count)]


def _top(layer: int) -> float:
    return MARGIN + layer * (NODE_HEIGHT + LAYER_GAP)


def _chains(
    ids: list[str], arcs: list[tuple[str, str]], level: dict[str, int]
) -> tuple[dict[str, _Vertex], dict[str, list[str]], dict[str, list[str]], list[list[str]]]:
    """The vertices (real nodes, plus a dummy per layer an edge crosses), the links down and
    up between them, and per edge the vertex keys from its upper to its lower end."""
    vertices = {i: _Vertex(i, True, NODE_WIDTH, level[i]) for i in ids}
    down: dict[str, list[str]] = {i: [] for i in ids}
    up: dict[str, list[str]] = {i: [] for i in ids}
    chains: list[list[str]] = []
    for index, (source, target) in enumerate(arcs):
        chain = [source]
        for step_layer in range(level[source] + 1, level[target]):
            key = f"\x00{index}:{step_layer}"
            vertices[key] = _Vertex(key, False, DUMMY_WIDTH, step_layer)
            down[key], up[key] = [], []
            chain.append(key)
        chain.append(target)
        for upper, lower in itertools.pairwise(chain):
            down[upper].append(lower)
            up[lower].append(upper)
        chains.append(chain)
    return vertices, down, up, chains


def _initial_layers(
    ids: list[str], vertices: dict[str, _Vertex], chains: list[list[str]]
) -> list[list[str]]:
    """Definition order for real nodes, dummies after their upper neighbour."""
    depth = max(v.layer for v in vertices.values()) + 1
    layers: list[list[str]] = [[] for _ in range(depth)]
    for key in ids:
        layers[vertices[key].layer].append(key)
    for chain in chains:
        for key in chain[1:-1]:
            layers[vertices[key].layer].append(key)
    return layers


def _node_boxes(
    steps: list[dict[str, Any]],
    vertices: dict[str, _Vertex],
    layers: list[list[str]],
    edges: list[tuple[str, str, str]],
) -> list[NodeBox]:
    order = {key: index for layer in layers for index, key in enumerate(layer)}
    linked: dict[str, set[str]] = {}
    outgoing: dict[str, int] = {}
    for (source, _target, _branch), port in zip(edges, edge_ports(steps, edges), strict=True):
        linked.setdefault(source, set()).add(port)
        outgoing[source] = outgoing.get(source, 0) + 1
    nodes = []
    for step in steps:
        key = step["id"]
        vertex = vertices[key]
        node_type = str(step.get("type", ""))
        known = NODE_TYPES.get(node_type)
        name = step.get("name") if isinstance(step.get("name"), str) else ""
        full = name or key
        nodes.append(
            NodeBox(
                id=key,
                type=node_type,
                type_label=known.label if known else node_type or "?",
                label=_shorten(full),
                full_label=full,
                x=vertex.x - NODE_WIDTH / 2,
                y=_top(vertex.layer),
                width=NODE_WIDTH,
                height=NODE_HEIGHT,
                layer=vertex.layer,
                order=order[key],
                branches=step_ports(step, outgoing.get(key, 0)),
                linked=frozenset(
                    linked.get(key, set()) | ({MAP_BODY_PORT} if map_body_type(step) else set())
                ),
                body=map_body_type(step) if node_type == "map" else "",
                map_body=bool(known and known.map_body),
            )
        )
    return nodes


def _ports(
    chains: list[list[str]], vertices: dict[str, _Vertex]
) -> tuple[dict[int, float], dict[int, float]]:
    """Per edge, the x where it leaves its upper node and where it enters its lower one.
    Several edges leaving (or entering) one node spread along its border, in the
    left-to-right order of where they go, so that they do not start on top of each other."""

    def next_x(chain: list[str], end: int) -> float:
        return vertices[chain[end]].x

    leaving: dict[str, list[int]] = {}
    entering: dict[str, list[int]] = {}
    for index, chain in enumerate(chains):
        leaving.setdefault(chain[0], []).append(index)
        entering.setdefault(chain[-1], []).append(index)
    start_x: dict[int, float] = {}
    end_x: dict[int, float] = {}
    for key, indexes in leaving.items():
        indexes.sort(key=lambda i: next_x(chains[i], 1))
        for i, x in zip(indexes, _spread(len(indexes), vertices[key].x, NODE_WIDTH), strict=True):
            start_x[i] = x
    for key, indexes in entering.items():
        indexes.sort(key=lambda i: next_x(chains[i], -2))
        for i, x in zip(indexes, _spread(len(indexes), vertices[key].x, NODE_WIDTH), strict=True):
            end_x[i] = x
    return start_x, end_x


def _edge_paths(
    steps: list[dict[str, Any]],
    edges: list[tuple[str, str, str]],
    flipped: set[int],
    chains: list[list[str]],
    vertices: dict[str, _Vertex],
    boxes: dict[str, NodeBox],
) -> list[EdgePath]:
    start_x, end_x = _ports(chains, vertices)
    ports = edge_ports(steps, edges)
    paths = []
    for index, chain in enumerate(chains):
        points = [(start_x[index], _top(vertices[chain[0]].layer) + NODE_HEIGHT)]
        for key in chain[1:-1]:
            vertex = vertices[key]
            points.append((vertex.x, _top(vertex.layer)))
            points.append((vertex.x, _top(vertex.layer) + NODE_HEIGHT))
        points.append((end_x[index], _top(vertices[chain[-1]].layer)))
        source, target, branch = edges[index]
        port = ports[index]
        if index not in flipped and port and port in boxes[source].branches:
            points[0] = (boxes[source].port_x(port) or points[0][0], points[0][1])
        if index in flipped:  # drawn in its real direction: from `source` to `target`
            points.reverse()
        label_x, label_y = _bezier_mid(points[0], points[1])
        paths.append(
            EdgePath(
                source=source,
                target=target,
                branch=branch,
                points=tuple(points),
                path=_curve(points),
                label_x=label_x,
                label_y=label_y,
            )
        )
    return paths


def layout(document: Any) -> Diagram:
    steps, edges = _graph(document)
    if not steps:
        return Diagram(nodes=(), edges=(), width=0.0, height=0.0, crossings=0)
    ids = [s["id"] for s in steps]
    flipped = _acyclic(ids, edges)
    arcs = [(t, s) if index in flipped else (s, t) for index, (s, t, _b) in enumerate(edges)]
    vertices, down, up, chains = _chains(ids, arcs, _longest_path_layers(ids, arcs))
    layers, crossings = _order(_initial_layers(ids, vertices, chains), down, up)
    _coordinates(layers, vertices, down, up)

    left = min(v.x - v.width / 2 for v in vertices.values())
    shift = MARGIN - left
    for vertex in vertices.values():
        vertex.x += shift
    width = max(v.x + v.width / 2 for v in vertices.values()) + MARGIN
    height = _top(len(layers) - 1) + NODE_HEIGHT + MARGIN
    real_layers = tuple(tuple(k for k in layer if vertices[k].real) for layer in layers)
    nodes = _node_boxes(steps, vertices, layers, edges)
    if any(position_of(s) is not None for s in steps):
        return _placed(steps, edges, nodes, crossings, real_layers)
    boxes = {n.id: n for n in nodes}
    return Diagram(
        nodes=tuple(nodes),
        edges=tuple(_edge_paths(steps, edges, flipped, chains, vertices, boxes)),
        width=round(width, 1),
        height=round(height, 1),
        crossings=crossings,
        layers=real_layers,
    )


def _placed(
    steps: list[dict[str, Any]],
    edges: list[tuple[str, str, str]],
    auto: list[NodeBox],
    crossings: int,
    layers: tuple[tuple[str, ...], ...],
) -> Diagram:
    """The diagram of a document with positions: placed steps where they were put, the others
    where the automatic layout put them, moved below the placed ones."""
    placed = {s["id"]: p for s in steps if (p := position_of(s)) is not None}
    bottom = max(y for _x, y in placed.values()) + NODE_HEIGHT + LAYER_GAP
    nodes = []
    for box in auto:
        x, y = placed.get(box.id) or (box.x, box.y + bottom)
        nodes.append(replace(box, x=x, y=y))
    boxes = {n.id: n for n in nodes}
    entering: dict[str, list[int]] = {}
    for index, (_source, target, _branch) in enumerate(edges):
        entering.setdefault(target, []).append(index)
    end_x: dict[int, float] = {}
    for key, indexes in entering.items():
        indexes.sort(key=lambda i: boxes[edges[i][0]].cx)
        spread = _spread(len(indexes), boxes[key].cx, NODE_WIDTH)
        end_x.update(zip(indexes, spread, strict=True))
    paths = []
    ports = edge_ports(steps, edges)
    for index, (source, target, branch) in enumerate(edges):
        start = (
            boxes[source].port_x(ports[index]) or boxes[source].cx,
            boxes[source].y + NODE_HEIGHT,
        )
        end = (end_x[index], boxes[target].y)
        label_x, label_y = _bezier_mid(start, end)
        paths.append(
            EdgePath(
                source=source,
                target=target,
                branch=branch,
                points=(start, end),
                path=_curve([start, end]),
                label_x=label_x,
                label_y=label_y,
            )
        )
    return Diagram(
        nodes=tuple(nodes),
        edges=tuple(paths),
        width=round(max(n.x + n.width for n in nodes) + MARGIN, 1),
        height=round(max(n.y + n.height for n in nodes) + MARGIN, 1),
        crossings=crossings,
        layers=layers,
    )
