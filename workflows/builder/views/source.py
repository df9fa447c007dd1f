"""The JSON/YAML view of the latest version, edited and saved as a whole."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from core.exceptions import ApplicationError
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm
from workflows import io, selectors, services
from workflows.builder.forms import SourceForm
from workflows.builder.issues import issue_texts, split_issue
from workflows.builder.views.common import (
    document_format,
    saved_message,
    workflow_links,
)


@require_http_methods(["GET", "POST"])
def workflow_source(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    latest = selectors.version_latest(workflow)
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
                version = services.version_save(
                    access=access,
                    workflow=workflow,
                    definition=document,
                    based_on=data["base"],
                    note=data["note"] or f"Edited as {data['format'].upper()}",
                    publish=publish,
                )
            except ApplicationError as exc:
                issues = issue_texts(exc)
                form.add_error("text", "Nothing was saved: see the problems listed.")
            else:
                saved_message(request, version, publish)
                url = reverse(
                    "workflow_source",
                    kwargs={"workspace_slug": access.workspace.slug, "workflow_id": workflow.pk},
                )
                return redirect(f"{url}?format={data['format']}")
    else:
        fmt = document_format(request.GET.get("format"))
        form = SourceForm(
            initial={
                "base": latest.number,
                "format": fmt,
                "text": io.export_definition(latest, fmt, leaving=False),
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
            "links": workflow_links(access, workflow, shown=latest),
            "tab": "source",
        },
        status=400 if issues or form.errors else 200,
    )
