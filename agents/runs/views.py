"""Agent run pages: every run of the workspace's agents (API and "Try it"), and one run."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render

from agents import selectors
from agents.runs import selectors as run_selectors
from tenants.access import page_access
from tenants.http import AppRequest


def agent_run_list(request: AppRequest) -> HttpResponse:
    access = page_access(request)
    agent = None
    agent_id = request.GET.get("agent", "")
    if agent_id.isdigit():
        agent = selectors.agent_get(access=access, agent_id=int(agent_id))
    page, rows = run_selectors.agent_runs_page(
        access=access, page=request.GET.get("page"), agent_id=agent.pk if agent else None
    )
    return render(request, "agents/runs/list.html", {"page": page, "rows": rows, "agent": agent})


def agent_run_detail(request: AppRequest, run_id: int) -> HttpResponse:
    access = page_access(request)
    view = run_selectors.agent_run_view(access=access, run_id=run_id)
    return render(request, "agents/runs/detail.html", {"view": view, "run": view.run})
