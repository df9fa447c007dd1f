"""What the builder's pages share: the version asked for or the latest one (404 otherwise),
the builder's URL, the links to the workflow's other pages, the "saved as version N" message
and the document format asked for."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.urls import reverse

from tenants.http import AppRequest
from tenants.permissions import Access, Perm
from workflows.models import Workflow, WorkflowVersion


def detail_url(access: Access, workflow: Workflow, **params: str) -> str:
    url = reverse(
        "workflow_detail",
        kwargs={"workspace_slug": access.workspace.slug, "workflow_id": workflow.pk},
    )
    query = "&".join(f"{k}={v}" for k, v in params.items() if v)
    return f"{url}?{query}" if query else url


def workflow_links(
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


def saved_message(request: AppRequest, version: WorkflowVersion, publish: bool) -> None:
    state = "published" if publish else "draft, not published yet"
    messages.success(request, f"Saved as version {version.number} ({state}).")


def document_format(value: str | None) -> str:
    return "yaml" if value == "yaml" else "json"
