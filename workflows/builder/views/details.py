"""The workflow's details (name, description, category), archive and restore: changes to the
workflow itself, not new versions."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from core.exceptions import ApplicationError
from core.forms import form_add_application_error
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm
from workflows import selectors, services
from workflows.builder.forms import WorkflowSettingsForm
from workflows.builder.views.common import detail_url
from workflows.builder.views.page import after_edit, builder_page


@require_POST
def workflow_settings(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    form = WorkflowSettingsForm(request.POST)
    if form.is_valid():
        try:
            workflow = services.workflow_update(
                access=access, workflow=workflow, **form.cleaned_data
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, "Details saved.")
            return after_edit(request, access, workflow, panel="overview")
    return builder_page(request, access, workflow, forms={"settings": form}, status=400)


@require_POST
def workflow_archive(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    try:
        services.workflow_archive(access=access, workflow=workflow)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(detail_url(access, workflow))
    messages.success(request, f"“{workflow.name}” archived. Its triggers no longer start runs.")
    return redirect("workflow_list", workspace_slug=access.workspace.slug)


@require_POST
def workflow_restore(request: AppRequest, workflow_id: int) -> HttpResponse:
    access = page_access(request, Perm.BUILD)
    workflow = selectors.workflow_get(access=access, workflow_id=workflow_id)
    try:
        services.workflow_restore(access=access, workflow=workflow)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"“{workflow.name}” restored.")
    return redirect(detail_url(access, workflow))
