"""The version history with a diff of two versions; publish one, or roll back to one."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from core.exceptions import ApplicationError
from core.http import int_or_none
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Access, Perm
from workflows import selectors, services
from workflows.builder.views.common import detail_url, workflow_links
from workflows.models import Workflow, WorkflowVersion


def _authors(versions: list[WorkflowVersion]) -> dict[int, str]:
    ids = {v.created_by_id for v in versions if v.created_by_id}
    return {u.pk: u.email for u in User.objects.filter(pk__in=ids)}


@require_GET
def workflow_versions(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    versions = list(selectors.version_list(workflow))
    authors = _authors(versions)
    rows = [{"version": v, "author": authors.get(v.created_by_id or 0, "")} for v in versions]
    diff = None
    old_number = int_or_none(request.GET.get("old"))
    new_number = int_or_none(request.GET.get("new"))
    if old_number is None and new_number is None and len(versions) > 1:
        new_number, old_number = versions[0].number, versions[1].number
    if old_number is not None and new_number is not None:
        old, new = (
            selectors.version_get(workflow, old_number),
            selectors.version_get(workflow, new_number),
        )
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
            "links": workflow_links(access, workflow),
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
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    version = selectors.version_get(workflow, number)
    try:
        services.version_publish(access=access, version=version)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Version {number} is now the active version.")
    if request.POST.get("next") == "builder":
        return redirect(detail_url(access, workflow))
    return redirect(_versions_url(access, workflow))


@require_POST
def workflow_version_rollback(request: AppRequest, workflow_id: int, number: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    version = selectors.version_get(workflow, number)
    try:
        new = services.version_rollback(access=access, version=version)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Rolled back: version {new.number} is a copy of version {number}, published."
        )
    return redirect(_versions_url(access, workflow))
