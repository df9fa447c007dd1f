"""The workspace's outbound access page: which hosts the http_request tool may reach."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from agents.outbound import selectors, services
from agents.outbound.forms import AllowedHostForm
from core.exceptions import ApplicationError
from core.forms import form_add_application_error
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm


@require_http_methods(["GET", "POST"])
def hosts(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    form = AllowedHostForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            added = services.allowed_host_add(access=access, host=form.cleaned_data["host"])
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, f"{added.host} added: agents may now reach it.")
            return redirect("outbound_hosts", workspace_slug=access.workspace.slug)
    return render(
        request,
        "agents/outbound/hosts.html",
        {"hosts": selectors.allowed_hosts_list(access=access), "form": form},
        status=400 if form.errors else 200,
    )


@require_POST
def host_remove(request: AppRequest, host_id: int) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    host = services.allowed_host_remove(access=access, host_id=host_id)
    messages.success(request, f"{host} removed from the allowlist.")
    return redirect("outbound_hosts", workspace_slug=access.workspace.slug)
