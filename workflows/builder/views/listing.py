"""The workflow list, a blank workflow, the template gallery and a workflow from a template."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.exceptions import ApplicationError, NotFound
from core.forms import form_add_application_error
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm
from workflows import library, services
from workflows.builder import queries
from workflows.builder.forms import WorkflowForm
from workflows.builder.layout import layout
from workflows.builder.views.common import detail_url
from workflows.definition import NODE_TYPES
from workflows.library import prepare

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


@require_GET
def workflow_list(request: AppRequest) -> HttpResponse:
    access = page_access(request)
    archived = request.GET.get("archived") == "1"
    rows = list(queries.workflow_rows(access=access, include_archived=archived))
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
            return redirect(detail_url(access, workflow, add="1"))
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
    except NotFound:
        raise  # a 404 (the error middleware), not a message
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("workflow_templates", workspace_slug=access.workspace.slug)
    messages.success(request, f"“{workflow.name}” created from the template.")
    return redirect(detail_url(access, workflow))
