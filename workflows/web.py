"""Transitional: `workflows/builder/views.py` still imports these names from here while it is
being split. Delete this module once it imports `tenants.access.page_access`,
`core.http.int_or_none` and calls `selectors.workflow_get(workflow_id=...)` itself."""

from __future__ import annotations

from core.http import int_or_none
from tenants.access import page_access
from workflows import selectors
from workflows.models import Workflow

__all__ = ["int_or_none", "page_access", "workflow_or_404"]


def workflow_or_404(workflow_id: int) -> Workflow:
    return selectors.workflow_get(workflow_id=workflow_id)
