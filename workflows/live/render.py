"""What a run page shows, read from the database and rendered to HTML. The views use it for the
whole page and for htmx answers; the websocket consumer for the fragments it sends.

Fragments (each an element with a stable id that an htmx out-of-band swap replaces):

- `#run-summary`: title, status, pinned version, trigger, totals (tokens, cost, duration),
  inputs, output, error and the run's buttons;
- `#run-diagram`: the DAG with every node coloured by its step's state;
- `#run-steps`: the step list, made of `#step-<id>` articles (a map step carries its items).

Everything is re-read from the database for every render, so whatever triggered it (a page
load, a websocket connect, a `run.changed` message, an action) shows the state as it is now.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from accounts.models import User
from agents.runs.selectors import AnsweredBy
from core.formatting import cost_text, duration_text, elapsed_ms
from tenants.permissions import Access, Perm
from tenants.schemas import current_schema
from workflows import run_selectors
from workflows.builder.layout import Diagram, NodeBox, layout
from workflows.definition import NODE_TYPES
from workflows.models import RecordedCall, RunStatus, StepRun, StepStatus, WorkflowRun

JSON_LIMIT = 20_000  # characters of pretty JSON shown per value; the API has the rest
DIAGRAM_CACHE_SIZE = 128


# ----------------------------------------------------------------------------- formatting


def pretty_json(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > JSON_LIMIT:
        return text[:JSON_LIMIT] + f"\n… ({len(text) - JSON_LIMIT:,} more characters)"
    return text


def reverse_url(name: str, **kwargs: Any) -> str:
    return reverse(name, kwargs=kwargs)


def workflow_url(slug: str, workflow_id: int) -> str | None:
    """The workflow's builder page, or None while the builder does not provide it."""
    try:
        return reverse(
            "workflow_detail", kwargs={"workspace_slug": slug, "workflow_id": workflow_id}
        )
    except NoReverseMatch:
        return None


# ----------------------------------------------------------------------------- run rows


@dataclass(frozen=True)
class RunRow:
    """A run as the history lists it."""

    run: WorkflowRun

    @property
    def duration(self) -> str:
        ms = elapsed_ms(self.run.started_at or self.run.created_at, self.run.finished_at)
        text = duration_text(ms)
        return text if self.run.finished else f"{text} so far"

    @property
    def tokens(self) -> int:
        return self.run.input_tokens + self.run.output_tokens

    @property
    def cost(self) -> str:
        return cost_text(self.run.cost_usd)


# ----------------------------------------------------------------------------- steps


@dataclass
class StepView:
    step: StepRun
    name: str
    type_label: str
    items: list[StepView] = field(default_factory=list)
    children: list[WorkflowRun] = field(default_factory=list)
    can_retry: bool = False
    can_decide: bool = False
    approvers: str = ""
    answered_by: AnsweredBy | None = None  # the provider and model of its last model call

    @property
    def status(self) -> str:
        return str(self.step.status)

    @property
    def duration(self) -> str:
        if self.step.started_at is None:
            return ""
        text = duration_text(elapsed_ms(self.step.started_at, self.step.finished_at))
        return text if self.step.finished_at is not None else f"{text} so far"

    @property
    def tokens(self) -> int:
        return self.step.input_tokens + self.step.output_tokens

    @property
    def cost(self) -> str:
        return cost_text(self.step.cost_usd)

    @property
    def spent(self) -> bool:
        return bool(self.tokens or self.step.cost_usd)

    @property
    def input_json(self) -> str | None:
        return None if self.step.input is None else pretty_json(self.step.input)

    @property
    def output_json(self) -> str | None:
        return None if self.step.output is None else pretty_json(self.step.output)

    @property
    def approval_message(self) -> str:
        data = self.step.input if isinstance(self.step.input, dict) else {}
        return str(data.get("message") or "")

    @property
    def decided_by(self) -> str:
        data = self.step.output if isinstance(self.step.output, dict) else {}
        return str(data.get("decided_by") or "")

    @property
    def items_done(self) -> int:
        return sum(1 for item in self.items if item.step.finished)

    @property
    def items_failed(self) -> int:
        return sum(1 for item in self.items if item.step.status == StepStatus.FAILED)


def _step_names(definition: dict[str, Any]) -> dict[str, tuple[str, str]]:
    names: dict[str, tuple[str, str]] = {}
    for raw in definition.get("steps") or []:
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            node_type = NODE_TYPES.get(str(raw.get("type", "")))
            names[raw["id"]] = (
                str(raw.get("name") or raw["id"]),
                node_type.label if node_type else str(raw.get("type", "")),
            )
    return names


def _approvers(definition: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw in definition.get("steps") or []:
        if isinstance(raw, dict) and raw.get("type") == "approval":
            config = raw.get("config") if isinstance(raw.get("config"), dict) else {}
            found[str(raw.get("id"))] = str((config or {}).get("approvers") or "members")
    return found


def _answered_by(steps: Sequence[StepRun]) -> dict[int, AnsweredBy]:
    """Which provider and model answered each step's last model call, from the step's recorded
    calls (the gateway stores the answering target's kind with each). One query, and none
    when no step has spent tokens."""
    spent = [s.pk for s in steps if s.input_tokens or s.output_tokens or s.cost_usd]
    if not spent:
        return {}
    rows = (
        RecordedCall.objects.filter(step_id__in=spent, kind=RecordedCall.Kind.LLM)
        .order_by("step_id", "-attempt", "-index")
        .distinct("step_id")
        .values_list("step_id", "response__kind", "response__result__model")
    )
    return {step_id: AnsweredBy(str(kind), str(model)) for step_id, kind, model in rows if kind}


def _step_views(
    run: WorkflowRun, steps: Sequence[StepRun], access: Access | None
) -> list[StepView]:
    """Views of top-level steps (each with `map_items` attached, as run_selectors gives them)."""
    definition = run.version.definition or {}
    names = _step_names(definition)
    approvers = _approvers(definition)
    can_run = access is not None and access.can(Perm.RUN)
    can_admin = access is not None and access.can(Perm.WORKSPACE_UPDATE)
    children: dict[int, list[WorkflowRun]] = {}
    waiting_on_child = [s.pk for s in steps if s.node_type == "sub_workflow" and s.attempt]
    if waiting_on_child:
        for child in WorkflowRun.objects.filter(parent_step_id__in=waiting_on_child).only(
            "id", "status", "parent_step_id", "created_at"
        ):
            children.setdefault(child.parent_step_id or 0, []).append(child)
    answered = _answered_by([*steps, *(i for s in steps for i in getattr(s, "map_items", []))])
    views = []
    for step in steps:
        name, type_label = names.get(step.node_id, (step.node_id, step.node_type))
        needs = approvers.get(step.node_id, "members")
        view = StepView(
            step=step,
            name=name,
            type_label=type_label,
            children=children.get(step.pk, []),
            can_retry=can_run
            and step.status == StepStatus.FAILED
            and run.status != RunStatus.CANCELLED,
            can_decide=step.node_type == "approval"
            and step.status == StepStatus.WAITING
            and not run.finished
            and (can_admin if needs == "admins" else can_run),
            approvers=needs if step.node_type == "approval" else "",
            answered_by=answered.get(step.pk),
        )
        view.items = [
            StepView(
                step=item,
                name=f"Item {item.item_index}",
                type_label=type_label,
                answered_by=answered.get(item.pk),
            )
            for item in getattr(step, "map_items", [])
        ]
        views.append(view)
    return views


# ----------------------------------------------------------------------------- diagram


@dataclass(frozen=True)
class NodeState:
    box: NodeBox
    status: str
    step_id: int | None
    detail: str  # second line: state, items, attempt

    @property
    def dot_x(self) -> float:
        return self.box.x + self.box.width - 14

    @property
    def dot_y(self) -> float:
        return self.box.meta_y - 4


@dataclass(frozen=True)
class EdgeState:
    path: str
    branch: str
    source: str
    target: str
    label_x: float
    label_y: float
    label_left: float
    label_top: float
    label_width: float
    state: str  # "taken", "skipped" or ""


@dataclass(frozen=True)
class DiagramView:
    width: float
    height: float
    nodes: list[NodeState]
    edges: list[EdgeState]


_diagrams: dict[tuple[str, int, Any], Diagram] = {}


def _diagram_of(run: WorkflowRun) -> Diagram:
    """The layout of the run's version; versions never change, so it is computed once per
    process, keyed by schema (ids repeat across workspaces) and by the version's creation time
    (ids start again in a workspace deleted and re-created under the same schema name), as the
    engine's plans are (workflows/engine/plans.py)."""
    key = (current_schema(), run.version_id, run.version.created_at)
    diagram = _diagrams.get(key)
    if diagram is None:
        if len(_diagrams) >= DIAGRAM_CACHE_SIZE:
            _diagrams.pop(next(iter(_diagrams)))
        diagram = _diagrams[key] = layout(run.version.definition)
    return diagram


@dataclass(frozen=True)
class _State:
    id: int
    node_id: str
    parent_id: int | None
    status: str
    attempt: int
    branch: str


def _states(run: WorkflowRun) -> list[_State]:
    rows = StepRun.objects.filter(run_id=run.pk).values_list(
        "id", "node_id", "parent_id", "status", "attempt", "branch"
    )
    return [_State(*row) for row in rows]


def _node_detail(state: _State | None, items: list[_State]) -> str:
    if state is None:
        return "not started"
    label = StepStatus(state.status).label if state.status in StepStatus.values else state.status
    if items:
        done = sum(1 for i in items if i.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED))
        return f"{label} · {done}/{len(items)} items"
    if state.attempt > 1:
        return f"{label} · attempt {state.attempt}"
    if state.branch and state.status == StepStatus.SUCCEEDED:
        return f"{label} · {state.branch}"
    return label


def diagram_view(run: WorkflowRun, states: Iterable[_State]) -> DiagramView:
    diagram = _diagram_of(run)
    top: dict[str, _State] = {}
    items: dict[int, list[_State]] = {}
    for state in states:
        if state.parent_id is None:
            top[state.node_id] = state
        else:
            items.setdefault(state.parent_id, []).append(state)
    nodes = []
    for box in diagram.nodes:
        found = top.get(box.id)
        nodes.append(
            NodeState(
                box=box,
                status=found.status if found else StepStatus.PENDING,
                step_id=found.id if found else None,
                detail=_node_detail(found, items.get(found.id, []) if found else []),
            )
        )
    edges = []
    for edge in diagram.edges:
        source, target = top.get(edge.source), top.get(edge.target)
        mark = ""
        if target is not None and target.status in (StepStatus.SKIPPED, StepStatus.CANCELLED):
            mark = "skipped"
        elif (
            source is not None
            and source.status == StepStatus.SUCCEEDED
            and (not edge.branch or source.branch == edge.branch)
        ):
            mark = "taken"
        elif source is not None and edge.branch and source.status == StepStatus.SUCCEEDED:
            mark = "skipped"
        edges.append(
            EdgeState(
                path=edge.path,
                branch=edge.branch,
                source=edge.source,
                target=edge.target,
                label_x=edge.label_x,
                label_y=edge.label_y,
                label_left=edge.label_left,
                label_top=edge.label_top,
                label_width=edge.label_width,
                state=mark,
            )
        )
    return DiagramView(width=diagram.width, height=diagram.height, nodes=nodes, edges=edges)


# ----------------------------------------------------------------------------- the run


@dataclass
class RunView:
    run: WorkflowRun
    slug: str
    can_run: bool
    started_by: str
    states: list[_State]
    steps: list[StepView] = field(default_factory=list)

    @property
    def workflow(self) -> Any:
        return self.run.workflow

    @property
    def workflow_url(self) -> str | None:
        return workflow_url(self.slug, self.run.workflow_id)

    @property
    def pinned_active(self) -> bool:
        return self.run.workflow.active_version_id == self.run.version_id

    @property
    def duration(self) -> str:
        return RunRow(self.run).duration if self.run.started_at or self.run.finished else "—"

    @property
    def tokens(self) -> int:
        return self.run.input_tokens + self.run.output_tokens

    @property
    def cost(self) -> str:
        return cost_text(self.run.cost_usd)

    @property
    def inputs_json(self) -> str:
        return pretty_json(self.run.inputs or {})

    @property
    def output_json(self) -> str | None:
        return None if self.run.output is None else pretty_json(self.run.output)

    @property
    def progress(self) -> tuple[int, int]:
        top = [s for s in self.states if s.parent_id is None]
        done = sum(1 for s in top if s.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED))
        return done, len(top)

    @property
    def steps_done(self) -> int:
        return self.progress[0]

    @property
    def steps_total(self) -> int:
        return self.progress[1]

    @property
    def can_cancel(self) -> bool:
        return self.can_run and not self.run.finished

    @property
    def can_resume(self) -> bool:
        return self.can_run and self.run.status == RunStatus.FAILED

    @property
    def can_rerun(self) -> bool:
        return self.can_run and self.run.finished and self.run.workflow.archived_at is None

    @property
    def diagram(self) -> DiagramView:
        return diagram_view(self.run, self.states)


def _started_by(run: WorkflowRun) -> str:
    if run.created_by_id is None:
        return f"API key {run.api_key_prefix}" if run.api_key_prefix else ""
    user = User.objects.filter(pk=run.created_by_id).first()
    return user.email if user is not None else "a former member"


def run_view(*, access: Access, run_id: int, step_ids: Iterable[int] | None = None) -> RunView:
    """The run as it is now. `step_ids` None: every step; otherwise only the top-level steps
    those ids belong to (a map item's step is its map step), for a partial update."""
    run = run_selectors.run_get(access=access, run_id=run_id)
    states = _states(run)
    view = RunView(
        run=run,
        slug=access.workspace.slug,
        can_run=access.can(Perm.RUN),
        started_by=_started_by(run),
        states=states,
    )
    if step_ids is None:
        steps = run_selectors.run_steps(run)
    else:
        by_id = {s.id: s for s in states}
        wanted = {(by_id[i].parent_id or i) for i in step_ids if i in by_id}
        steps = _top_steps(run, wanted)
    view.steps = _step_views(run, steps, access)
    return view


def _top_steps(run: WorkflowRun, ids: set[int]) -> list[StepRun]:
    """The top-level steps `ids` with their map items attached (like run_selectors.run_steps)."""
    if not ids:
        return []
    rows = list(
        StepRun.objects.filter(run_id=run.pk)
        .filter(Q(pk__in=ids) | Q(parent_id__in=ids))
        .order_by("item_index", "id")
    )
    top = [s for s in rows if s.parent_id is None]
    for step in top:
        step.map_items = [s for s in rows if s.parent_id == step.pk]  # type: ignore[attr-defined]
    return top


# ----------------------------------------------------------------------------- HTML


def page_context(view: RunView) -> dict[str, Any]:
    return {"view": view, "run": view.run, "slug": view.slug, "diagram": view.diagram}


def render_full(view: RunView, *, notice: str = "", notice_level: str = "info") -> str:
    """Every fragment as an out-of-band swap: what a socket sends on connect, and what an
    htmx action answers."""
    return render_to_string(
        "workflows/runs/_oob.html",
        {**page_context(view), "full": True, "notice": notice, "notice_level": notice_level},
    )


def render_changed(view: RunView) -> str:
    """The summary, the diagram and the steps in `view.steps` as out-of-band swaps."""
    return render_to_string("workflows/runs/_oob.html", {**page_context(view), "full": False})
