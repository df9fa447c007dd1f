"""The builder's version edits: a step saved, added or deleted, an edge added or removed, the
run inputs.

Each version edit applies one pure edit (workflows/builder/edits.py) to the latest version
through `services.version_edit`, which validates and saves it as a new version: on an error
nothing is saved and the messages are shown beside the field or in a list that names the
step. Edit forms carry the number of the version they were made on (`base`, passed as
`based_on`); if someone saved in between, the service refuses the edit (Conflict) instead of
silently overwriting their change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpResponse
from django.views.decorators.http import require_POST

from core.exceptions import ApplicationError, NotFound
from core.http import int_or_none
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Access, Perm
from workflows import selectors, services
from workflows.builder import edits
from workflows.builder.forms import (
    AddStepForm,
    ConnectForm,
    DeleteStepForm,
    EdgeForm,
    InputsFormSet,
    StepForm,
    inputs_from,
)
from workflows.builder.issues import issue_texts
from workflows.builder.views.common import saved_message
from workflows.builder.views.page import after_edit, builder_page, place_step_issues, step_choices
from workflows.definition import NODE_TYPES
from workflows.models import Workflow, WorkflowVersion

# When every problem of a refused save went beside its field (only publishing refuses them).
BESIDE_FIELDS = (
    "The problems are shown beside their fields. Save keeps the edit as a draft; publishing "
    "needs them fixed."
)


def _save(
    access: Access,
    workflow: Workflow,
    base: int | None,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    note: str,
    publish: bool,
) -> WorkflowVersion:
    """Save `change(latest definition)` as the next version, refused if `base` (the version
    the form was made on) is no longer the latest. The builder's edits may leave a draft
    incomplete (its problems are then shown on the diagram and beside the fields); publishing
    always checks."""
    return services.version_edit(
        access=access,
        workflow=workflow,
        edit=change,
        based_on=base,
        note=note,
        publish=publish,
        allow_incomplete=True,
    )


@require_POST
def workflow_step_save(request: AppRequest, workflow_id: int, step_id: str) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    latest = selectors.version_latest(workflow)
    step = edits.step_get(latest.definition, step_id)
    if step is None or str(step.get("type")) not in NODE_TYPES:
        raise NotFound("No such step in the latest version.")
    form = StepForm(
        request.POST, node_type=str(step["type"]), choices=step_choices(access, latest.definition)
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
            issues = place_step_issues(form, issue_texts(exc), new_step["id"]) or [BESIDE_FIELDS]
        else:
            saved_message(request, version, publish)
            return after_edit(request, access, workflow, panel="step", selected=new_step["id"])
    return builder_page(
        request,
        access,
        workflow,
        panel="step",
        selected=step_id,
        forms={"step": form},
        issues=issues,
        status=400,
    )


@require_POST
def workflow_step_add(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    latest = selectors.version_latest(workflow)
    node_type = request.POST.get("type", "")
    if node_type not in NODE_TYPES:
        raise NotFound("Unknown step type.")
    form = AddStepForm(
        request.POST,
        node_type=node_type,
        choices=step_choices(access, latest.definition),
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
            issues = place_step_issues(form, issue_texts(exc), new_step["id"]) or [BESIDE_FIELDS]
        else:
            saved_message(request, version, publish)
            return after_edit(request, access, workflow, panel="step", selected=new_step["id"])
    return builder_page(
        request, access, workflow, panel="add", forms={"add": form}, issues=issues, status=400
    )


@require_POST
def workflow_step_delete(request: AppRequest, workflow_id: int, step_id: str) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
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
            saved_message(request, version, publish)
            return after_edit(request, access, workflow, panel="overview")
    return builder_page(
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
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    definition = selectors.version_latest(workflow).definition
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
            saved_message(request, version, publish)
            return after_edit(request, access, workflow, panel=panel, selected=selected)
    return builder_page(
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
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
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
            saved_message(request, version, publish)
            return after_edit(request, access, workflow, panel=panel, selected=selected)
    else:
        issues = ["The edge to remove was not named."]
    return builder_page(
        request, access, workflow, panel=panel, selected=selected, issues=issues, status=400
    )


@require_POST
def workflow_inputs_save(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
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
            saved_message(request, version, publish)
            return after_edit(request, access, workflow, panel="overview")
    return builder_page(
        request, access, workflow, forms={"inputs": formset}, issues=issues, status=400
    )
