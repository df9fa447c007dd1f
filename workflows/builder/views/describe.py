"""Describe a workflow in words: a generated draft, shown with its problems, then created."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from core.exceptions import ApplicationError
from core.forms import form_add_application_error
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm
from workflows import generation, services, validators
from workflows.builder.forms import DescribeCreateForm, DescribeForm
from workflows.builder.issues import split_issue
from workflows.builder.layout import layout
from workflows.builder.views.common import detail_url
from workflows.models import WorkflowVersion


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
            return redirect(detail_url(access, workflow))
    draft = form.cleaned_data.get("definition") if hasattr(form, "cleaned_data") else None
    context: dict[str, Any] = {"form": DescribeForm(), "create_form": form}
    if isinstance(draft, dict):
        context.update(_draft_context(draft, notes=[], used_llm=False, create_form=form))
    template = "workflows/builder/describe.html"
    if request.htmx:
        template += "#result"
    return render(request, template, context, status=400)
