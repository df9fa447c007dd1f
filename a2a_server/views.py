"""The owner's switch on an agent's page (templates/a2a_server/_agent_section.html)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from a2a_server import services
from agents import selectors as agent_selectors
from core.exceptions import ValidationFailed
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm


@require_POST
def agent_expose(request: AppRequest, agent_id: int) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    agent = agent_selectors.agent_get(access=access, agent_id=agent_id)
    choice = request.POST.get("exposed", "")
    if choice not in ("0", "1"):
        raise ValidationFailed("exposed: send 1 or 0.", fields={"exposed": ["Send 1 or 0."]})
    services.agent_a2a_expose_set(access=access, agent_id=agent.pk, exposed=choice == "1")
    messages.success(
        request, "Exposed over A2A." if choice == "1" else "No longer reachable over A2A."
    )
    return redirect("agent_detail", workspace_slug=access.workspace.slug, agent_id=agent.pk)
