"""The overview page's workflows card."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm
from workflows.builder import queries


@require_GET
def workflow_dashboard_card(request: AppRequest) -> HttpResponse:
    """The overview page's workflows card (loaded into the dashboard by htmx)."""
    access = page_access(request)
    return render(
        request,
        "workflows/builder/_dashboard_card.html",
        {
            "workflows": queries.recent_workflows(access=access),
            "runs": queries.recent_runs(access=access),
            "can_build": access.can(Perm.BUILD),
        },
    )
