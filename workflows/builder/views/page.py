"""The builder page: the diagram of a version, and beside it the panel in use: the
workflow's overview (details, run inputs, connections), one step's form, or "Add step"; and
the answer after an edit (`after_edit`).

The latest version is editable by builders while the workflow is not archived; an older one
(`?version=N`) is shown read-only. The problems that keep the shown version from being
published are marked on the diagram and, for the open step, beside its fields.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from agents import selectors as agent_selectors
from agents.tools.registry import BUILTIN_TOOLS
from core.http import int_or_none
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Access, Perm
from workflows import agent_refs, selectors
from workflows.builder import edits
from workflows.builder.canvas_ops import free_step_id
from workflows.builder.forms import (
    DEFAULT_CONFIG,
    AddStepForm,
    ConnectForm,
    DeleteStepForm,
    InputsFormSet,
    StepForm,
    TypePickForm,
    WorkflowSettingsForm,
    inputs_initial,
)
from workflows.builder.issues import split_issue
from workflows.builder.layout import layout
from workflows.builder.views.common import (
    detail_url,
    workflow_links,
)
from workflows.definition import NODE_TYPES
from workflows.models import Workflow, WorkflowVersion


def builder_page(
    request: AppRequest,
    access: Access,
    workflow: Workflow,
    *,
    shown: WorkflowVersion | None = None,
    panel: str = "overview",
    selected: str = "",
    forms: dict[str, Any] | None = None,
    issues: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The page (or, for htmx, its `#builder` partial) showing `shown` (default: the latest
    version) with `panel` open. `forms` are refused forms to show again with their errors,
    `issues` the messages of a refused save that did not go beside a field."""
    latest = selectors.version_latest(workflow)
    shown = shown or latest
    definition = shown.definition
    editable = access.can(Perm.BUILD) and shown.pk == latest.pk and workflow.archived_at is None
    forms = dict(forms or {})
    # What keeps the version on screen from being published or run (a draft may be saved
    # incomplete); the builder marks the steps and fields concerned.
    problems = selectors.version_problems(shown)
    problem_steps = {i.step_id for i in map(split_issue, problems) if i.step_id}
    problem_count = len(problems)
    step = edits.step_get(definition, selected) if selected else None
    if panel == "step" and step is None:
        panel, selected = "overview", ""

    if editable and panel == "overview":
        _overview_forms(forms, workflow, definition, base=latest.number)
    elif editable and panel == "step" and step is not None:
        problems = _step_forms(
            forms, access, definition, step, selected, base=latest.number, problems=problems
        )
    elif editable and panel == "add":
        _add_forms(forms, request, access, definition, base=latest.number)

    shown_issues = [split_issue(text) for text in issues or []]
    diagram = layout(definition)
    edges = [
        {"source": e.get("from"), "target": e.get("to"), "branch": e.get("branch", "")}
        for e in definition.get("edges") or []
    ]
    context = {
        "workflow": workflow,
        "latest": latest,
        "shown": shown,
        "definition": definition,
        "definition_json": json.dumps(definition, indent=2, ensure_ascii=False),
        "step": step,
        "step_json": json.dumps((step or {}).get("config", {}), indent=2, ensure_ascii=False),
        "step_type": NODE_TYPES.get(str((step or {}).get("type"))),
        "step_edges": [e for e in edges if selected in (e["source"], e["target"])],
        "edges": edges,
        "diagram": diagram,
        "version_param": f"&version={shown.number}" if shown.pk != latest.pk else "",
        "selected": selected,
        "panel": panel,
        "forms": forms,
        "issues": shown_issues,
        "step_issues": [i for i in shown_issues if i.step_id and i.step_id == selected],
        # Shown when nothing was refused: the refusal's own list says more.
        "problems": [] if shown_issues else [split_issue(text) for text in problems],
        "problem_count": problem_count,
        "problem_steps": problem_steps,
        "editable": editable,
        "can_build": access.can(Perm.BUILD),
        "links": workflow_links(access, workflow, shown=shown),
        "node_types": NODE_TYPES,
        # The canvas (static/js/workflow-canvas.js) edits the latest version through its JSON
        # endpoint, and shows the last run's step states.
        "canvas": {
            "url": reverse(
                "workflow_canvas",
                kwargs={"workspace_slug": access.workspace.slug, "workflow_id": workflow.pk},
            ),
            # Presence, others' saves and the live run's changes are pushed through it
            # (workflows/builder/consumers.py); the JSON endpoint is polled only without it.
            "socket": f"/ws/w/{access.workspace.slug}/workflows/{workflow.pk}/canvas/",
        }
        if shown.pk == latest.pk
        else None,
        "tab": "diagram",
    }
    template = "workflows/builder/detail.html"
    if request.htmx and not request.htmx.boosted:
        template += "#builder"
        context["header_oob"] = True  # the header's badges and Run follow the saved version
    response = render(request, template, context, status=status)
    if request.method == "POST" and status == 200 and request.htmx:
        response["HX-Push-Url"] = detail_url(
            access, workflow, step=selected if panel == "step" else ""
        )
    return response


def _overview_forms(
    forms: dict[str, Any], workflow: Workflow, definition: dict[str, Any], *, base: int
) -> None:
    """The overview panel's forms not already in `forms`: details, run inputs, connect."""
    forms.setdefault(
        "settings",
        WorkflowSettingsForm(
            initial={
                "name": workflow.name,
                "description": workflow.description,
                "category": workflow.category,
                "mcp_exposed": workflow.mcp_exposed,
            }
        ),
    )
    forms.setdefault("inputs", InputsFormSet(initial=inputs_initial(definition), prefix="inputs"))
    forms.setdefault(
        "connect",
        ConnectForm(
            initial={"base": base},
            source_choices=edits.branch_choices(definition),
            target_choices=edits.step_ids(definition),
        ),
    )


def _step_forms(
    forms: dict[str, Any],
    access: Access,
    definition: dict[str, Any],
    step: dict[str, Any],
    selected: str,
    *,
    base: int,
    problems: list[str],
) -> list[str]:
    """The step panel's forms (`step` is the step `selected` names) not already in `forms`:
    the step, delete, connect from it. Returns `problems` without those now shown beside the
    step form's fields."""
    node_type = str(step.get("type"))
    if node_type in NODE_TYPES and "step" not in forms:
        form = StepForm(
            initial=StepForm.initial_for(step, base),
            node_type=node_type,
            choices=step_choices(access, definition),
        )
        # A draft's problems with this step go beside their fields.
        placed = set(problems) - set(place_step_issues(form, problems, selected))
        problems = [p for p in problems if p not in placed]
        forms["step"] = form
    forms.setdefault("delete", DeleteStepForm(initial={"base": base}))
    own = [
        (v, label)
        for v, label in edits.branch_choices(definition)
        if edits.split_branch(v)[0] == selected
    ]
    forms.setdefault(
        "connect",
        ConnectForm(
            initial={"base": base},
            source_choices=own,
            target_choices=[i for i in edits.step_ids(definition) if i != selected],
        ),
    )
    return problems


def _add_forms(
    forms: dict[str, Any],
    request: AppRequest,
    access: Access,
    definition: dict[str, Any],
    *,
    base: int,
) -> None:
    """The "Add step" panel's forms not already in `forms`: the type picker and the new
    step's form (an id not taken, attached where the flow goes on by default)."""
    node_type = request.GET.get("type") or request.POST.get("type") or "llm"
    if node_type not in NODE_TYPES:
        node_type = "llm"
    forms.setdefault("pick", TypePickForm(initial={"type": node_type}))
    if "add" in forms:
        return
    after = request.GET.get("after") or _default_after(definition)
    initial = StepForm.initial_for(
        {"id": free_step_id(definition, node_type), "config": DEFAULT_CONFIG.get(node_type, {})},
        base,
    )
    initial.update(after=after, insert=True)
    forms["add"] = AddStepForm(
        initial=initial,
        node_type=node_type,
        choices=step_choices(access, definition),
        after_choices=edits.branch_choices(definition),
    )


@require_GET
def workflow_detail(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    number = int_or_none(request.GET.get("version"))
    shown = selectors.version_get(workflow, number) if number else None
    if "add" in request.GET:
        panel, selected = "add", ""
    elif request.GET.get("step"):
        panel, selected = "step", request.GET["step"]
    else:
        panel, selected = "overview", ""
    return builder_page(request, access, workflow, shown=shown, panel=panel, selected=selected)


def after_edit(
    request: AppRequest, access: Access, workflow: Workflow, *, panel: str, selected: str = ""
) -> HttpResponse:
    """The answer to a saved change: the builder again (its partial, for htmx) with `panel`
    open, or a redirect to it."""
    if not request.htmx:
        return redirect(detail_url(access, workflow, step=selected if panel == "step" else ""))
    workflow.refresh_from_db()
    return builder_page(request, access, workflow, panel=panel, selected=selected)


def place_step_issues(form: StepForm, texts: list[str], step_id: str) -> list[str]:
    """Put each message about this step beside its field; return the ones left for the list.
    The form may be unbound (a saved draft's problems, shown when its step is opened)."""
    if not form.is_bound:
        form.cleaned_data = {}  # what add_error tidies up; an unbound form has none yet
    left = []
    for text in texts:
        issue = split_issue(text)
        field = form.field_for_path(issue.step_path) if issue.step_id == step_id else None
        if field and field in form.fields:
            form.add_error(field, issue.message)
        else:
            left.append(text)
    return left


def step_choices(access: Access, definition: dict[str, Any]) -> dict[str, list[tuple[Any, str]]]:
    """Pickers for the fields that name something in the workspace (plus what the steps
    already name, so an edit never drops a value the picker does not know). Agents are picked
    by id, labelled with a detail that tells agents of one name apart."""
    held = agent_refs.agent_ids(definition)
    agents: list[tuple[Any, str]] = list(agent_selectors.agent_choices(access=access, keep=held))
    for missing in sorted(held - {pk for pk, _ in agents}):
        agents.append((missing, f"#{missing} (no longer exists)"))
    tools = [(name, name) for name in BUILTIN_TOOLS]
    workflows = [(w.name, w.name) for w in selectors.workflow_list(access=access)]
    choices: dict[str, list[tuple[Any, str]]] = {
        "agent_id": agents,
        "tool": tools,
        "workflow": workflows,
    }
    for step in definition.get("steps") or []:
        config = step.get("config") or {}
        for key in ("tool", "workflow"):
            value = config.get(key)
            if isinstance(value, str) and value and (value, value) not in choices[key]:
                choices[key].append((value, value))
    return choices


def _default_after(definition: dict[str, Any]) -> str:
    """Where "Add step" attaches by default: the last step nothing leaves from, on its first
    branch (`approved`, `true`, a router's first route): the way the flow goes on."""
    sources = {e.get("from") for e in definition.get("edges") or []}
    choices = edits.branch_choices(definition)
    for step_id in reversed(edits.step_ids(definition)):
        if step_id in sources:
            continue
        for value, _label in choices:  # a step's branches in their declared order
            if edits.split_branch(value)[0] == step_id:
                return value
    return ""
