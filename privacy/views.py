"""Data-rights pages: the account's Privacy page, the workspace's "Export / delete" settings
section (owners only), export status (polled by HTMX) and download, and restoring a workspace
scheduled for deletion. Views parse input, call one service or selector, and render."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.requests import signed_in_user
from core.exceptions import ApplicationError
from core.forms import form_add_application_error
from privacy import selectors, services
from privacy.forms import AccountDeleteForm, WorkspaceDeleteForm
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Perm


def _account_context(request: AppRequest, form: AccountDeleteForm | None = None) -> dict[str, Any]:
    user = signed_in_user(request)
    return {
        "exports": selectors.exports_for_user(user=user),
        "form": form or AccountDeleteForm(has_password=user.has_usable_password()),
        "blockers": services.account_deletion_blockers(user=user),
        "sole_workspaces": services.account_sole_workspaces(user=user),
        "grace_days": settings.PRIVACY_WORKSPACE_GRACE_DAYS,
        "ttl_hours": settings.PRIVACY_EXPORT_TTL_HOURS,
    }


@login_required
@require_GET
@never_cache
def account_privacy(request: AppRequest) -> HttpResponse:
    return render(request, "privacy/account.html", _account_context(request))


@login_required
@require_POST
def account_export(request: AppRequest) -> HttpResponse:
    services.account_export_request(user=signed_in_user(request))
    messages.success(request, "Your export is being built. It appears below when it is ready.")
    return redirect("account_privacy")


@login_required
@require_POST
def account_delete(request: AppRequest) -> HttpResponse:
    user = signed_in_user(request)
    form = AccountDeleteForm(request.POST, has_password=user.has_usable_password())
    if form.is_valid():
        try:
            services.account_delete(
                user=user,
                password=form.cleaned_data.get("password", ""),
                confirm_email=form.cleaned_data.get("confirm_email", ""),
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            logout(request)
            messages.success(request, "Your account has been deleted. Goodbye.")
            return redirect("landing")
    return render(request, "privacy/account.html", _account_context(request, form), status=400)


@login_required
@require_GET
@never_cache
def export_status(request: AppRequest, export_id: int) -> HttpResponse:
    """One archive's row: HTMX polls it while it is being built."""
    job = selectors.export_get_for_user(user=signed_in_user(request), export_id=export_id)
    return render(request, "privacy/_export.html", {"job": job})


@login_required
@require_GET
@never_cache
def export_download(request: AppRequest, export_id: int) -> HttpResponse | FileResponse:
    user = signed_in_user(request)
    job = selectors.export_get_for_download(user=user, export_id=export_id)
    path = services.export_path(job)
    if path is None or not path.exists():
        return render(
            request,
            "error.html",
            {"exception": "This archive is no longer available: request a new export."},
            status=410,
        )
    services.export_downloaded(job=job, user=user)
    label = job.workspace.slug if job.workspace is not None else "account"
    name = f"{label}-export-{job.created_at:%Y%m%d}.zip"
    response = FileResponse(path.open("rb"), as_attachment=True, filename=name)
    response["Content-Type"] = "application/zip"
    return response


# --- the workspace's Export / delete section (owners only) ------------------------------------
def _workspace_context(
    request: AppRequest, form: WorkspaceDeleteForm | None = None
) -> dict[str, Any]:
    access = page_access(request, Perm.WORKSPACE_DELETE)
    return {
        "exports": selectors.exports_for_user(
            user=signed_in_user(request), workspace=access.workspace
        ),
        "form": form or WorkspaceDeleteForm(),
        "grace_days": settings.PRIVACY_WORKSPACE_GRACE_DAYS,
        "ttl_hours": settings.PRIVACY_EXPORT_TTL_HOURS,
    }


@require_GET
@never_cache
def workspace_data(request: AppRequest) -> HttpResponse:
    return render(request, "privacy/workspace.html", _workspace_context(request))


@require_POST
def workspace_export(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_DELETE)
    services.workspace_export_request(access=access)
    messages.success(request, "The workspace export is being built. It appears below when ready.")
    return redirect("workspace_data", workspace_slug=access.workspace.slug)


@require_POST
def workspace_delete(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_DELETE)
    form = WorkspaceDeleteForm(request.POST)
    if form.is_valid():
        try:
            services.workspace_deletion_request(access=access, confirm=form.cleaned_data["confirm"])
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(
                request,
                f"{access.workspace.name} is scheduled for deletion. Its owners can restore it "
                f"for {settings.PRIVACY_WORKSPACE_GRACE_DAYS} days.",
            )
            return redirect("workspace_list")
    return render(request, "privacy/workspace.html", _workspace_context(request, form), status=400)


@login_required
@require_http_methods(["POST"])
def workspace_restore(request: AppRequest, slug: str) -> HttpResponse:
    """Restore a workspace scheduled for deletion (its owners, or staff). Outside `/w/<slug>/`:
    the workspace's own pages are closed while it is pending."""
    user = signed_in_user(request)
    workspace = services.pending_workspace_for_restore(user=user, slug=slug)
    services.workspace_restore(workspace=workspace, by=user)
    messages.success(request, f"{workspace.name} is restored.")
    return redirect("workspace_dashboard", workspace_slug=workspace.slug)
