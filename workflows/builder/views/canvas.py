"""The canvas's JSON endpoint, /w/<slug>/workflows/<id>/canvas/:

- GET: the latest version (number, definition, problems) and the last run's step states, which
  the canvas polls while that run is going;
- POST `{"base": N, "ops": [...]}`: one batch of edits (workflows/builder/canvas_ops.py) saved
  as one new version made on version N. The answer is the saved version (number, definition,
  problems) and the ids of the steps it added; a refused batch answers with the error's status
  (409 for a stale base, with the service's message), its message and its problems.

Outsiders get 404 (the workspace does not exist for them); viewers may read, not edit (403).
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from core.exceptions import ApplicationError, Conflict, ValidationFailed
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Access, Perm
from workflows import selectors
from workflows.builder import canvas_ops, queries
from workflows.builder.issues import issue_texts
from workflows.builder.views.common import latest_version
from workflows.models import RUN_FINISHED, Workflow, WorkflowVersion

MAX_BODY = 1_000_000


def _version(version: WorkflowVersion) -> dict[str, Any]:
    return {
        "version": version.number,
        "definition": version.definition,
        "problems": selectors.version_problems(version),
    }


def _state(access: Access, workflow: Workflow) -> dict[str, Any]:
    run, steps = queries.last_run_states(workflow)
    return {
        **_version(latest_version(workflow)),
        "run": None
        if run is None
        else {
            "id": run.pk,
            "url": reverse(
                "workflow_run_detail",
                kwargs={"workspace_slug": access.workspace.slug, "run_id": run.pk},
            ),
            "status": run.status,
            "version": run.version.number,
            "live": run.status not in RUN_FINISHED,
        },
        "steps": steps,
        "can_edit": access.can(Perm.BUILD) and workflow.archived_at is None,
    }


@require_http_methods(["GET", "POST"])
def workflow_canvas(request: AppRequest, workflow_id: int) -> HttpResponse:
    if request.method == "GET":
        access = page_access(request)
        workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
        return JsonResponse(_state(access, workflow))
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    try:
        body = _body(request)
        base = body.get("base")
        if not isinstance(base, int) or isinstance(base, bool):
            raise ValidationFailed("base: send the number of the version the edit was made on.")
        result = canvas_ops.canvas_apply(
            access=access, workflow=workflow, base=base, ops=body.get("ops") or []
        )
    except ApplicationError as exc:
        return JsonResponse(
            {
                "error": exc.message,
                "problems": issue_texts(exc),
                "conflict": isinstance(exc, Conflict),
            },
            status=exc.status,
        )
    return JsonResponse({**_version(result.version), "added": result.added})


def _body(request: AppRequest) -> dict[str, Any]:
    if len(request.body) > MAX_BODY:
        raise ValidationFailed(f"The edit is larger than {MAX_BODY // 1000} kB; send less.")
    try:
        body = json.loads(request.body or b"{}")
    except ValueError as exc:
        raise ValidationFailed('The body is not JSON: send {"base": N, "ops": [...]}.') from exc
    if not isinstance(body, dict):
        raise ValidationFailed('The body is a JSON object: {"base": N, "ops": [...]}.')
    return body
