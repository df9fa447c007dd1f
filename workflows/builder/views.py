"""Workflow builder pages: the list, the template gallery, "describe it", import, the builder
(diagram + step panel), the JSON/YAML view, versions with diff, publish and rollback, export.

Every edit loads the latest version, applies one pure edit (workflows/builder/edits.py) and
saves the result as a new version through `services.version_save`, which validates it: on an
error nothing is saved and the messages are shown beside the field or in a list that names the
step. Edit forms carry the number of the version they were made on (`base`); if someone saved
in between, the edit is refused instead of silently overwriting their change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import User
from agents import selectors as agent_selectors
from agents.tools.registry import BUILTIN_TOOLS
from core.exceptions import ApplicationError, Conflict, NotFound
from core.forms import form_add_application_error
from core.http import AppRequest
from tenants.permissions import Access, Perm
from workflows import agent_refs, generation, io, library, selectors, services, validators
from workflows.builder import edits, queries
from workflows.builder.forms import (
    DEFAULT_CONFIG,
    AddStepForm,
    ConnectForm,
    DeleteStepForm,
    DescribeCreateForm,
    DescribeForm,
    EdgeForm,
    ImportForm,
    InputsFormSet,
    SourceForm,
    StepForm,
    TypePickForm,
    WorkflowForm,
    inputs_from,
    inputs_initial,
)
from workflows.builder.issues import issue_texts, split_issue
from workflows.builder.layout import layout
from workflows.definition import NODE_TYPES
from workflows.library import prepare
from workflows.models import Workflow, WorkflowVersion
from workflows.web import int_or_none, page_access, workflow_or_404

BLANK_DEFINITION: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"text": {"type": "string", "required": True, "description": "What to work on"}},
    "steps": [
        {
            "id": "start",
            "type": "transform",
            "name": "Start",
            "config": {"value": "{{ input.text }}"},
        }
    ],
    "edges": [],
}


# When every problem of a refused save went beside its field (only publishing refuses them).
BESIDE_FIELDS = (
    "The problems are shown beside their fields. Save keeps the edit as a draft; publishing "
    "needs them fixed."
)

# ------------------------------------------------------------------ helpers


def _version(workflow: Workflow, number: int) -> WorkflowVersion:
    try:
        return selectors.version_get(workflow, number)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def _latest(workflow: Workflow) -> WorkflowVersion:
    version = selectors.version_list(workflow).first()
    if version is None:  # a workflow is created with its first version; never empty
        raise Http404("This workflow has no version.")
    return version


def _detail_url(access: Access, workflow: Workflow, **params: str) -> str:
    url = reverse(
        "workflow_detail",
        kwargs={"workspace_slug": access.workspace.slug, "workflow_id": workflow.pk},
    )
    query = "&".join(f"{k}={v}" for k, v in params.items() if v)
    return f"{url}?{query}" if query else url


def _workflow_links(
    access: Access, workflow: Workflow, *, shown: WorkflowVersion | None = None
) -> dict[str, Any]:
    """The workflow's pages beyond the builder: start a run (empty for roles that cannot run),
    its runs, its triggers. With `shown` (the version on screen), *Run* runs that version, not
    the active one: what a builder just built is what they mean to try."""
    kwargs = {"workspace_slug": access.workspace.slug, "workflow_id": workflow.pk}
    run = reverse("workflow_run_start", kwargs=kwargs) if access.can(Perm.RUN) else ""
    if run and shown is not None:
        run += f"?version={shown.number}"
    return {
        "run": run,
        "run_version": shown.number if shown is not None else None,
        "runs": reverse("workflow_run_list", kwargs=kwargs),
        "triggers": reverse("workflow_triggers", kwargs=kwargs),
    }


def _step_choices(access: Access, definition: dict[str, Any]) -> dict[str, list[tuple[Any, str]]]:
    """Pickers for the fields that name something in the workspace (plus what the steps
    already name, so an edit never drops a value the picker does not know). Agents are picked
    by id, labelled with a detail that tells agents of one name apart."""
    held = agent_refs.agent_ids(definition)
    agents: list[tuple[Any, str]] = list(agent_selectors.agent_choices(access=access, keep=held))
    for missing in sorted(held - {pk for pk, _ in agents}):
        agents.append((missing, f"#{missing} (no longer exists)"))
    tools = [(name, name) for name in BUILTIN_TOOLS]
    workflows = [(w.name, w.name) for w in selectors.workflow_list()]
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


def _suggest_id(definition: dict[str, Any], node_type: str) -> str:
    taken = set(edits.step_ids(definition))
    number = 1
    while f"{node_type}_{number}" in taken:
        number += 1
    return f"{node_type}_{number}"


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


def _save(
    access: Access,
    workflow: Workflow,
    base: int | None,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    note: str,
    publish: bool,
    source: str = WorkflowVersion.Source.EDITOR,
    allow_incomplete: bool = True,
) -> WorkflowVersion:
    """Save `change(latest definition)` as the next version. The builder's edits may leave a
    draft incomplete (its problems are then shown on the diagram and beside the fields); the
    JSON view and imports pass `allow_incomplete=False`, and publishing always checks."""
    latest = _latest(workflow)
    if base is not None and base != latest.number:
        raise Conflict(
            f"Someone saved version {latest.number} since you opened version {base}. "
            "Reload the page to see it; nothing was saved."
        )
    return services.version_save(
        access=access,
        workflow=workflow,
        definition=change(latest.definition),
        note=note[:200],
        source=source,
        publish=publish,
        allow_incomplete=allow_incomplete,
    )


def _saved_message(request: AppRequest, version: WorkflowVersion, publish: bool) -> None:
    state = "published" if publish else "draft, not published yet"
    messages.success(request, f"Saved as version {version.number} ({state}).")


# ------------------------------------------------------------------ the builder page


def _builder(
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
    latest = _latest(workflow)
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

    if editable:
        base = latest.number
        branch_choices = edits.branch_choices(definition)
        ids = edits.step_ids(definition)
        if panel == "overview":
            forms.setdefault(
                "settings",
                WorkflowForm(
                    initial={
                        "name": workflow.name,
                        "description": workflow.description,
                        "category": workflow.category,
                    }
                ),
            )
            forms.setdefault(
                "inputs", InputsFormSet(initial=inputs_initial(definition), prefix="inputs")
            )
            forms.setdefault(
                "connect",
                ConnectForm(
                    initial={"base": base},
                    source_choices=branch_choices,
                    target_choices=ids,
                ),
            )
        elif panel == "step" and step is not None:
            node_type = str(step.get("type"))
            if node_type in NODE_TYPES and "step" not in forms:
                form = StepForm(
                    initial=StepForm.initial_for(step, base),
                    node_type=node_type,
                    choices=_step_choices(access, definition),
                )
                # A draft's problems with this step go beside their fields.
                placed = set(problems) - set(_place_step_issues(form, problems, selected))
                problems = [p for p in problems if p not in placed]
                forms["step"] = form
            forms.setdefault("delete", DeleteStepForm(initial={"base": base}))
            own = [
                (v, label) for v, label in branch_choices if edits.split_branch(v)[0] == selected
            ]
            forms.setdefault(
                "connect",
                ConnectForm(
                    initial={"base": base},
                    source_choices=own,
                    target_choices=[i for i in ids if i != selected],
                ),
            )
        elif panel == "add":
            node_type = request.GET.get("type") or request.POST.get("type") or "llm"
            if node_type not in NODE_TYPES:
                node_type = "llm"
            forms.setdefault("pick", TypePickForm(initial={"type": node_type}))
            if "add" not in forms:
                after = request.GET.get("after") or _default_after(definition)
                initial = StepForm.initial_for(
                    {
                        "id": _suggest_id(definition, node_type),
                        "config": DEFAULT_CONFIG.get(node_type, {}),
                    },
                    base,
                )
                initial.update(after=after, insert=True)
                forms["add"] = AddStepForm(
                    initial=initial,
                    node_type=node_type,
                    choices=_step_choices(access, definition),
                    after_choices=branch_choices,
                )

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
        "links": _workflow_links(access, workflow, shown=shown),
        "node_types": NODE_TYPES,
        "tab": "diagram",
    }
    template = "workflows/builder/detail.html"
    if request.htmx and not request.htmx.boosted:
        template += "#builder"
        context["header_oob"] = True  # the header's badges and Run follow the saved version
    response = render(request, template, context, status=status)
    if request.method == "POST" and status == 200 and request.htmx:
        response["HX-Push-Url"] = _detail_url(
            access, workflow, step=selected if panel == "step" else ""
        )
    return response


@require_GET
def workflow_detail(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request)
    workflow = workflow_or_404(workflow_id)
    number = int_or_none(request.GET.get("version"))
    shown = _version(workflow, number) if number else None
    if "add" in request.GET:
        panel, selected = "add", ""
    elif request.GET.get("step"):
        panel, selected = "step", request.GET["step"]
    else:
        panel, selected = "overview", ""
    return _builder(request, access, workflow, shown=shown, panel=panel, selected=selected)


def _place_step_issues(form: StepForm, texts: list[str], step_id: str) -> list[str]:
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


@require_POST
def workflow_step_save(request: AppRequest, workflow_id: int, step_id: str) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = workflow_or_404(workflow_id)
    latest = _latest(workflow)
    step = edits.step_get(latest.definition, step_id)
    if step is None or str(step.get("type")) not in NODE_TYPES:
        raise Http404("No such step in the latest version.")
    form = StepForm(
        request.POST, node_type=str(step["type"]), choices=_step_choices(access, latest.definition)
    )
    issues: list[str] = []
    if form.is_valid():
        new_step = form.to_step()
        publish = request.POST.get("action") == "publish"
        try:
            version = _save(
                access,
                workflow,
                form.cleaned_data["base"],
                lambda d: edits.step_replace(d, step_id, new_step),
                note=f"Edited step {new_step['id']}",
                publish=publish,
            )
        except ApplicationError as exc:
            issues = _place_step_issues(form, issue_texts(exc), new_step["id"]) or [BESIDE_FIELDS]
        else:
            _saved_message(request, version, publish)
            return _after_edit(request, access, workflow, panel="step", selected=new_step["id"])
    return _builder(
        request,
        access,
        workflow,
        panel="step",
        selected=step_id,
        forms={"step": form},
        issues=issues,
        status=400,
    )


def _after_edit(
    request: AppRequest, access: Access, workflow: Workflow, *, panel: str, selected: str = ""
) -> HttpResponse:
    if not request.htmx:
        return redirect(_detail_url(access, workflow, step=selected if panel == "step" else ""))
    workflow.refresh_from_db()
    return _builder(request, access, workflow, panel=panel, selected=selected)


@require_POST
def workflow_step_add(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = workflow_or_404(workflow_id)
    latest = _latest(workflow)
    node_type = request.POST.get("type", "")
    if node_type not in NODE_TYPES:
        raise Http404("Unknown step type.")
    form = AddStepForm(
        request.POST,
        node_type=node_type,
        choices=_step_choices(access, latest.definition),
        after_choices=edits.branch_choices(latest.definition),
    )
    issues: list[str] = []
    if form.is_valid():
        new_step = form.to_step()
        after, branch = edits.split_branch(form.cleaned_data["after"])
        publish = request.POST.get("action") == "publish"
        try:
            version = _save(
                access,
                workflow,
                form.cleaned_data["base"],
                lambda d: edits.step_add(
                    d, new_step, after=after, branch=branch, insert=form.cleaned_data["insert"]
                ),
                note=f"Added step {new_step['id']}" + (f" after {after}" if after else ""),
                publish=publish,
            )
        except ApplicationError as exc:
            issues = _place_step_issues(form, issue_texts(exc), new_step["id"]) or [BESIDE_FIELDS]
        else:
            _saved_message(request, version, publish)
            return _after_edit(request, access, workflow, panel="step", selected=new_step["id"])
    return _builder(
        request, access, workflow, panel="add", forms={"add": form}, issues=issues, status=400
    )


@require_POST
def workflow_step_delete(request: AppRequest, workflow_id: int, step_id: str) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = workflow_or_404(workflow_id)
    form = DeleteStepForm(request.POST)
    issues: list[str] = []
    if form.is_valid():
        publish = request.POST.get("action") == "publish"
        try:
            version = _save(
                access,
                workflow,
                form.cleaned_data["base"],
                lambda d: edits.step_delete(d, step_id, reconnect=form.cleaned_data["reconnect"]),
                note=f"Deleted step {step_id}",
                publish=publish,
            )
        except ApplicationError as exc:
            issues = issue_texts(exc)
        else:
            _saved_message(request, version, publish)
            return _after_edit(request, access, workflow, panel="overview")
    return _builder(
        request,
        access,
        workflow,
        panel="step",
        selected=step_id,
        forms={"delete": form},
        issues=issues,
        status=400,
    )


def _return_panel(request: AppRequest) -> tuple[str, str]:
    selected = request.POST.get("return_step", "")
    return ("step", selected) if selected else ("overview", "")


@require_POST
def workflow_edge_add(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = workflow_or_404(workflow_id)
    definition = _latest(workflow).definition
    form = ConnectForm(
        request.POST,
        source_choices=edits.branch_choices(definition),
        target_choices=edits.step_ids(definition),
    )
    panel, selected = _return_panel(request)
    issues: list[str] = []
    if form.is_valid():
        source, branch = edits.split_branch(form.cleaned_data["source"])
        target = form.cleaned_data["target"]
        publish = request.POST.get("action") == "publish"
        label = f"{source}{f' ({branch})' if branch else ''} → {target}"
        try:
            version = _save(
                access,
                workflow,
                form.cleaned_data["base"],
                lambda d: edits.edge_add(d, source, target, branch),
                note=f"Connected {label}",
                publish=publish,
            )
        except ApplicationError as exc:
            issues = issue_texts(exc)
        else:
            _saved_message(request, version, publish)
            return _after_edit(request, access, workflow, panel=panel, selected=selected)
    return _builder(
        request,
        access,
        workflow,
        panel=panel,
        selected=selected,
        forms={"connect": form},
        issues=issues,
        status=400,
    )


@require_POST
def workflow_edge_delete(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = workflow_or_404(workflow_id)
    form = EdgeForm(request.POST)
    panel, selected = _return_panel(request)
    issues: list[str] = []
    if form.is_valid():
        data = form.cleaned_data
        publish = request.POST.get("action") == "publish"
        try:
            version = _save(
                access,
                workflow,
                data["base"],
                lambda d: edits.edge_delete(d, data["source"], data["target"], data["branch"]),
                note=f"Removed edge {data['source']} → {data['target']}",
                publish=publish,
            )
        except ApplicationError as exc:
            issues = issue_texts(exc)
        else:
            _saved_message(request, version, publish)
            return _after_edit(request, access, workflow, panel=panel, selected=selected)
    else:
        issues = ["The edge to remove was not named."]
    return _builder(
        request, access, workflow, panel=panel, selected=selected, issues=issues, status=400
    )


@require_POST
def workflow_inputs_save(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = workflow_or_404(workflow_id)
    formset = InputsFormSet(request.POST, prefix="inputs")
    base = int_or_none(request.POST.get("base"))
    issues: list[str] = []
    if formset.is_valid():
        inputs = inputs_from(formset)
        publish = request.POST.get("action") == "publish"
        try:
            version = _save(
                access,
                workflow,
                base,
                lambda d: edits.inputs_replace(d, inputs),
                note="Edited the run inputs",
                publish=publish,
            )
        except ApplicationError as exc:
            issues = issue_texts(exc)
        else:
            _saved_message(request, version, publish)
            return _after_edit(request, access, workflow, panel="overview")
    return _builder(request, access, workflow, forms={"inputs": formset}, issues=issues, status=400)


@require_POST
def workflow_settings(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = workflow_or_404(workflow_id)
    form = WorkflowForm(request.POST)
    if form.is_valid():
        try:
            workflow = services.workflow_update(
                access=access, workflow=workflow, **form.cleaned_data
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, "Details saved.")
            return _after_edit(request, access, workflow, panel="overview")
    return _builder(request, access, workflow, forms={"settings": form}, status=400)


@require_POST
def workflow_archive(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = workflow_or_404(workflow_id)
    try:
        services.workflow_archive(access=access, workflow=workflow)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(_detail_url(access, workflow))
    messages.success(request, f"“{workflow.name}” archived. Its triggers no longer start runs.")
    return redirect("workflow_list", workspace_slug=access.workspace.slug)


@require_POST
def workflow_restore(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = workflow_or_404(workflow_id)
    try:
        services.workflow_restore(access=access, workflow=workflow)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"“{workflow.name}” restored.")
    return redirect(_detail_url(access, workflow))


# ------------------------------------------------------------------ list, create, templates


@require_GET
def workflow_list(request: AppRequest) -> HttpResponse:
    access = page_access(request)
    archived = request.GET.get("archived") == "1"
    rows = list(queries.workflow_rows(include_archived=archived))
    if archived:
        rows = [w for w in rows if w.archived_at is not None]
    return render(
        request,
        "workflows/builder/list.html",
        {"workflows": rows, "archived": archived, "can_build": access.can(Perm.BUILD)},
    )


@require_http_methods(["GET", "POST"])
def workflow_create(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    form = WorkflowForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            workflow = services.workflow_create(
                access=access,
                definition=BLANK_DEFINITION,
                note="Blank workflow",
                **form.cleaned_data,
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, f"“{workflow.name}” created. Add steps below.")
            return redirect(_detail_url(access, workflow, add="1"))
    return render(
        request,
        "workflows/builder/new.html",
        {"form": form},
        status=400 if form.errors else 200,
    )


def _template_cards(template_list: list[Any]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for template in template_list:
        groups.setdefault(template.category or "Other", []).append(
            {
                "template": template,
                "diagram": layout(template.definition),
                "steps": len(template.definition.get("steps") or []),
                "types": sorted(
                    {
                        NODE_TYPES[s["type"]].label
                        for s in template.definition.get("steps") or []
                        if s.get("type") in NODE_TYPES
                    }
                ),
            }
        )
    return [{"category": name, "cards": cards} for name, cards in groups.items()]


@require_GET
def workflow_templates(request: AppRequest) -> HttpResponse:
    access = page_access(request)
    return render(
        request,
        "workflows/builder/gallery.html",
        {
            "groups": _template_cards(library.templates()),
            "can_build": access.can(Perm.BUILD),
        },
    )


@require_POST
def workflow_template_use(request: AppRequest, key: str) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    try:
        workflow = prepare.workflow_from_template(access=access, key=key)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("workflow_templates", workspace_slug=access.workspace.slug)
    messages.success(request, f"“{workflow.name}” created from the template.")
    return redirect(_detail_url(access, workflow))


# ------------------------------------------------------------------ describe it


def _suggest_name(description: str) -> str:
    first = description.strip().split(".")[0].split("\n")[0]
    return (first[:60].rsplit(" ", 1)[0] if len(first) > 60 else first).strip() or "New workflow"


def _draft_context(
    definition: Any, *, notes: list[str], used_llm: bool, create_form: DescribeCreateForm
) -> dict[str, Any]:
    problems = [str(i) for i in validators.validate(definition)]
    return {
        "draft": definition,
        "diagram": layout(definition),
        "notes": notes,
        "used_llm": used_llm,
        "problems": [split_issue(p) for p in problems],
        "create_form": create_form,
    }


@require_http_methods(["GET", "POST"])
def workflow_describe(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    form = DescribeForm(request.POST or None)
    context: dict[str, Any] = {"form": form}
    status = 200
    if request.method == "POST":
        if form.is_valid():
            description = form.cleaned_data["description"]
            try:
                generated = generation.generate_definition(description, access=access)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
                status = 400
            else:
                create_form = DescribeCreateForm(
                    initial={
                        "name": _suggest_name(description),
                        "description": description[:500],
                        "definition": generated.definition,
                    }
                )
                context.update(
                    _draft_context(
                        generated.definition,
                        notes=list(generated.notes),
                        used_llm=generated.used_llm,
                        create_form=create_form,
                    )
                )
        else:
            status = 400
    template = "workflows/builder/describe.html"
    if request.htmx and request.method == "POST":
        template += "#result"
    return render(request, template, context, status=status)


@require_POST
def workflow_describe_create(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    form = DescribeCreateForm(request.POST)
    if form.is_valid():
        try:
            workflow = services.workflow_create(
                access=access,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                definition=form.cleaned_data["definition"],
                source=WorkflowVersion.Source.GENERATED,
                note="Generated from a description",
            )
        except ApplicationError as exc:
            if "definition" in exc.fields:
                form.add_error(None, "Nothing was saved: the draft has problems (listed below).")
            else:
                form_add_application_error(form, exc)
        else:
            messages.success(request, f"“{workflow.name}” created from your description.")
            return redirect(_detail_url(access, workflow))
    draft = form.cleaned_data.get("definition") if hasattr(form, "cleaned_data") else None
    context: dict[str, Any] = {"form": DescribeForm(), "create_form": form}
    if isinstance(draft, dict):
        context.update(_draft_context(draft, notes=[], used_llm=False, create_form=form))
    template = "workflows/builder/describe.html"
    if request.htmx:
        template += "#result"
    return render(request, template, context, status=400)


# ------------------------------------------------------------------ JSON / YAML view


def _format(value: str | None) -> str:
    return "yaml" if value == "yaml" else "json"


@require_http_methods(["GET", "POST"])
def workflow_source(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request)
    workflow = workflow_or_404(workflow_id)
    latest = _latest(workflow)
    editable = access.can(Perm.BUILD) and workflow.archived_at is None
    issues: list[str] = []
    if request.method == "POST":
        if not editable:
            raise DjangoPermissionDenied(f"Your role ({access.role}) cannot change workflows.")
        form = SourceForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            publish = request.POST.get("action") == "publish"
            try:
                document = io.parse_document(data["text"], data["format"])
                version = _save(
                    access,
                    workflow,
                    data["base"],
                    lambda _d: document,
                    note=data["note"] or f"Edited as {data['format'].upper()}",
                    publish=publish,
                    allow_incomplete=False,
                )
            except ApplicationError as exc:
                issues = issue_texts(exc)
                form.add_error("text", "Nothing was saved: see the problems listed.")
            else:
                _saved_message(request, version, publish)
                url = reverse(
                    "workflow_source",
                    kwargs={"workspace_slug": access.workspace.slug, "workflow_id": workflow.pk},
                )
                return redirect(f"{url}?format={data['format']}")
    else:
        fmt = _format(request.GET.get("format"))
        form = SourceForm(
            initial={
                "base": latest.number,
                "format": fmt,
                "text": io.export_definition(latest, fmt),
            }
        )
    return render(
        request,
        "workflows/builder/source.html",
        {
            "workflow": workflow,
            "latest": latest,
            "form": form,
            "fmt": form["format"].value(),
            "issues": [split_issue(t) for t in issues],
            "editable": editable,
            "can_build": access.can(Perm.BUILD),
            "links": _workflow_links(access, workflow, shown=latest),
            "tab": "source",
        },
        status=400 if issues or form.errors else 200,
    )


# ------------------------------------------------------------------ versions, diff, rollback


def _authors(versions: list[WorkflowVersion]) -> dict[int, str]:
    ids = {v.created_by_id for v in versions if v.created_by_id}
    return {u.pk: u.email for u in User.objects.filter(pk__in=ids)}


@require_GET
def workflow_versions(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request)
    workflow = workflow_or_404(workflow_id)
    versions = list(selectors.version_list(workflow))
    authors = _authors(versions)
    rows = [{"version": v, "author": authors.get(v.created_by_id or 0, "")} for v in versions]
    diff = None
    old_number = int_or_none(request.GET.get("old"))
    new_number = int_or_none(request.GET.get("new"))
    if old_number is None and new_number is None and len(versions) > 1:
        new_number, old_number = versions[0].number, versions[1].number
    if old_number is not None and new_number is not None:
        old, new = _version(workflow, old_number), _version(workflow, new_number)
        diff = selectors.version_diff(old, new)
    return render(
        request,
        "workflows/builder/versions.html",
        {
            "workflow": workflow,
            "latest": versions[0] if versions else None,
            "rows": rows,
            "numbers": [v.number for v in versions],
            "old_number": old_number,
            "new_number": new_number,
            "diff": diff,
            "diff_lines": _diff_lines(diff.unified if diff is not None else ""),
            "can_build": access.can(Perm.BUILD) and workflow.archived_at is None,
            "links": _workflow_links(access, workflow),
            "tab": "versions",
        },
    )


def _diff_lines(unified: str) -> list[tuple[str, str]]:
    lines = []
    for line in unified.splitlines():
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "added"
        elif line.startswith("-"):
            kind = "removed"
        else:
            kind = "same"
        lines.append((kind, line))
    return lines


def _versions_url(access: Access, workflow: Workflow) -> str:
    return reverse(
        "workflow_versions",
        kwargs={"workspace_slug": access.workspace.slug, "workflow_id": workflow.pk},
    )


@require_POST
def workflow_version_publish(request: AppRequest, workflow_id: int, number: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = workflow_or_404(workflow_id)
    version = _version(workflow, number)
    try:
        services.version_publish(access=access, version=version)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Version {number} is now the active version.")
    if request.POST.get("next") == "builder":
        return redirect(_detail_url(access, workflow))
    return redirect(_versions_url(access, workflow))


@require_POST
def workflow_version_rollback(request: AppRequest, workflow_id: int, number: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = workflow_or_404(workflow_id)
    version = _version(workflow, number)
    try:
        new = services.version_rollback(access=access, version=version)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Rolled back: version {new.number} is a copy of version {number}, published."
        )
    return redirect(_versions_url(access, workflow))


# ------------------------------------------------------------------ export and import


@require_GET
def workflow_export(request: AppRequest, workflow_id: int) -> HttpResponse:
    page_access(request)
    workflow = workflow_or_404(workflow_id)
    number = int_or_none(request.GET.get("version"))
    version = _version(workflow, number) if number else _latest(workflow)
    fmt = _format(request.GET.get("format"))
    text = io.export_definition(version, fmt)
    content_type = "application/json" if fmt == "json" else "application/yaml"
    response = HttpResponse(text, content_type=f"{content_type}; charset=utf-8")
    filename = f"{slugify(workflow.name) or 'workflow'}-v{version.number}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_http_methods(["GET", "POST"])
def workflow_import(request: AppRequest) -> HttpResponse:
    """A new workflow from a JSON/YAML file or pasted text."""
    access = page_access(request, Perm.BUILD)
    form = ImportForm(request.POST or None, request.FILES or None)
    issues: list[str] = []
    if request.method == "POST" and form.is_valid():
        try:
            workflow = io.import_document(
                access=access,
                text=form.cleaned_data["text"],
                fmt=form.cleaned_data["format"] or None,
                name=form.cleaned_data["name"] or None,
            )
        except ApplicationError as exc:
            if "name" in exc.fields:
                form.add_error("name", exc.fields["name"][0])
            else:
                issues = issue_texts(exc)
                form.add_error(None, "Nothing was imported: see the problems listed.")
        else:
            messages.success(request, f"“{workflow.name}” imported.")
            return redirect(_detail_url(access, workflow))
    return render(
        request,
        "workflows/builder/import.html",
        {"form": form, "workflow": None, "issues": [split_issue(t) for t in issues]},
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
def workflow_import_version(request: AppRequest, workflow_id: int) -> HttpResponse:
    """A new version of this workflow from a JSON/YAML file or pasted text."""
    access = page_access(request, Perm.BUILD)
    workflow = workflow_or_404(workflow_id)
    form = ImportForm(request.POST or None, request.FILES or None)
    issues: list[str] = []
    if request.method == "POST" and form.is_valid():
        publish = request.POST.get("action") == "publish"
        try:
            document = io.parse_document(
                form.cleaned_data["text"], form.cleaned_data["format"] or None
            )
            version = _save(
                access,
                workflow,
                None,
                lambda _d: document,
                note="Imported",
                publish=publish,
                source=WorkflowVersion.Source.IMPORT,
                allow_incomplete=False,
            )
        except ApplicationError as exc:
            issues = issue_texts(exc)
            form.add_error(None, "Nothing was imported: see the problems listed.")
        else:
            _saved_message(request, version, publish)
            return redirect(_detail_url(access, workflow))
    return render(
        request,
        "workflows/builder/import.html",
        {
            "form": form,
            "workflow": workflow,
            "issues": [split_issue(t) for t in issues],
            "links": _workflow_links(access, workflow),
        },
        status=400 if form.errors else 200,
    )


# ------------------------------------------------------------------ dashboard card


@require_GET
def workflow_dashboard_card(request: AppRequest) -> HttpResponse:
    """The overview page's workflows card (loaded into the dashboard by htmx)."""
    access = page_access(request)
    return render(
        request,
        "workflows/builder/_dashboard_card.html",
        {
            "workflows": queries.recent_workflows(),
            "runs": queries.recent_runs(),
            "can_build": access.can(Perm.BUILD),
        },
    )
