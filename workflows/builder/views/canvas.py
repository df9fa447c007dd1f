"""The canvas's JSON endpoint, /w/<slug>/workflows/<id>/canvas/:

- GET `?selected=<step>&known=<version>`: the latest version (number; its definition and
  problems unless it is the `known` one the canvas has), the last run's
  step states and who else has the canvas open (and on which step); the canvas reads it when it
  opens and when its websocket says something changed (workflows/builder/consumers.py), and
  polls it only while that socket is down;
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
from django.views.decorators.http import require_http_methods

from core.exceptions import ApplicationError, Conflict, ValidationFailed
from core.http import int_or_none
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm
from workflows import selectors
from workflows.builder import canvas_ops
from workflows.builder.issues import issue_texts

MAX_BODY = 1_000_000


@require_http_methods(["GET", "POST"])
def workflow_canvas(request: AppRequest, workflow_id: int) -> HttpResponse:
    if request.method == "GET":
        access = page_access(request)
        workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
        present = canvas_ops.presence_note(
            access=access, workflow=workflow, selected=request.GET.get("selected", "")
        )
        known = int_or_none(request.GET.get("known"))
        return JsonResponse(
            {**canvas_ops.canvas_state(access, workflow, known), "present": present}
        )
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
    return JsonResponse({**canvas_ops.version_state(result.version), "added": result.added})


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
