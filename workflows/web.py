"""What every workflow page view starts with: the caller's access (404 outside a workspace,
403 with the reason for a role that may not), the workflow or 404, and lenient query integers."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from core.exceptions import NotFound
from core.http import AppRequest
from tenants.permissions import Access, Perm
from workflows import selectors
from workflows.models import Workflow


def page_access(request: AppRequest, perm: Perm = Perm.WORKSPACE_VIEW) -> Access:
    access = request.access
    if access is None:
        raise Http404("Workspace not found.")
    if not access.can(perm):
        raise PermissionDenied(f"Your role ({access.role}) cannot do this.")
    return access


def workflow_or_404(workflow_id: int) -> Workflow:
    try:
        return selectors.workflow_get(workflow_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def int_or_none(value: str | None) -> int | None:
    """A query parameter as an integer; None when missing or not a number."""
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
