"""Agent run pages: every run of the workspace's agents (API and "Try it"), and one run."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import render

from agents import run_selectors, selectors
from core.exceptions import NotFound
from core.http import AppRequest
from tenants.permissions import Access


def _access(request: AppRequest) -> Access:
    if request.access is None:  # not a member: the workspace does not exist for them
        raise Http404("Workspace not found.")
    return request.access


def agent_run_list(request: AppRequest) -> HttpResponse:
    access = _access(request)
    agent = None
    agent_id = request.GET.get("agent", "")
    if agent_id.isdigit():
        try:
            agent = selectors.agent_get(access=access, agent_id=int(agent_id))
        except NotFound as exc:
            raise Http404(exc.message) from exc
    page, rows = run_selectors.agent_runs_page(
        access=access, page=request.GET.get("page"), agent_id=agent.pk if agent else None
    )
    return render(request, "agents/runs/list.html", {"page": page, "rows": rows, "agent": agent})


def agent_run_detail(request: AppRequest, run_id: int) -> HttpResponse:
    access = _access(request)
    try:
        view = run_selectors.agent_run_view(access=access, run_id=run_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    return render(request, "agents/runs/detail.html", {"view": view, "run": view.run})
