"""Export a version as a JSON/YAML file; import one as a new workflow or a new version."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods

from core.exceptions import ApplicationError
from core.http import int_or_none
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm
from workflows import io, selectors, services
from workflows.builder.forms import ImportForm
from workflows.builder.issues import issue_texts, split_issue
from workflows.builder.views.common import (
    detail_url,
    document_format,
    saved_message,
    workflow_links,
)
from workflows.models import WorkflowVersion


@require_GET
def workflow_export(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    number = int_or_none(request.GET.get("version"))
    version = selectors.version_or_latest(workflow, number)
    fmt = document_format(request.GET.get("format"))
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
            return redirect(detail_url(access, workflow))
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
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    form = ImportForm(request.POST or None, request.FILES or None)
    issues: list[str] = []
    if request.method == "POST" and form.is_valid():
        publish = request.POST.get("action") == "publish"
        try:
            document = io.parse_document(
                form.cleaned_data["text"], form.cleaned_data["format"] or None
            )
            version = services.version_save(
                access=access,
                workflow=workflow,
                definition=document,
                note="Imported",
                publish=publish,
                source=WorkflowVersion.Source.IMPORT,
            )
        except ApplicationError as exc:
            issues = issue_texts(exc)
            form.add_error(None, "Nothing was imported: see the problems listed.")
        else:
            saved_message(request, version, publish)
            return redirect(detail_url(access, workflow))
    return render(
        request,
        "workflows/builder/import.html",
        {
            "form": form,
            "workflow": workflow,
            "issues": [split_issue(t) for t in issues],
            "links": workflow_links(access, workflow),
        },
        status=400 if form.errors else 200,
    )
