"""The workspace's MCP servers page: remote servers whose tools agents may be given."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from agents.mcp_servers import selectors, services
from agents.mcp_servers.forms import McpConnectionForm
from core.exceptions import ApplicationError
from core.forms import form_add_application_error
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm


def _left_out(request: AppRequest, problems: list[str]) -> None:
    for problem in problems:
        messages.warning(request, f"Left out: {problem}")


@require_http_methods(["GET", "POST"])
def connections(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    form = McpConnectionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            connection, problems = services.mcp_connection_create(
                access=access, **form.cleaned_data
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(
                request, f"{connection.name} connected: {len(connection.tools)} tool(s)."
            )
            _left_out(request, problems)
            return redirect("mcp_connections", workspace_slug=access.workspace.slug)
    return render(
        request,
        "agents/mcp_servers/list.html",
        {"connections": selectors.mcp_connections_list(access=access), "form": form},
        status=400 if form.errors else 200,
    )


@require_POST
def connection_refresh(request: AppRequest, connection_id: int) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    try:
        problems = services.mcp_connection_refresh(access=access, connection_id=connection_id)
    except ApplicationError as exc:
        if exc.status == 404:
            raise
        messages.error(request, exc.message)
    else:
        messages.success(request, "Tools fetched again.")
        _left_out(request, problems)
    return redirect("mcp_connections", workspace_slug=access.workspace.slug)


@require_POST
def connection_delete(request: AppRequest, connection_id: int) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    services.mcp_connection_delete(access=access, connection_id=connection_id)
    messages.success(request, "Connection removed; agents given its tools will be refused them.")
    return redirect("mcp_connections", workspace_slug=access.workspace.slug)
