"""Workspace pages. Views parse input, call one service or selector, and render; the
workspace and the caller's `Access` are set by `WorkspaceMiddleware` before they run."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.requests import signed_in_user
from core.exceptions import ApplicationError, NotFound
from core.forms import form_add_application_error
from tenants import audit, selectors, services
from tenants.access import page_access
from tenants.forms import (
    ApiKeyForm,
    InviteForm,
    RoleForm,
    WorkspaceCreateForm,
    WorkspaceSettingsForm,
)
from tenants.http import AppRequest
from tenants.permissions import Access, Perm, assignable_roles

WORKSPACES_PER_PAGE = 24


def landing(request: AppRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("workspace_home_redirect")
    return render(request, "tenants/landing.html")


@login_required
def workspace_home_redirect(request: AppRequest) -> HttpResponse:
    slug = selectors.home_workspace_slug(
        user=signed_in_user(request), last=request.session.get("last_workspace")
    )
    if slug is not None:
        return redirect("workspace_dashboard", workspace_slug=slug)
    if request.user.is_staff:  # an operator with no workspace of their own: the back-office
        return redirect("admin:index")
    return redirect("workspace_create")


@login_required
def workspace_list(request: AppRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    memberships = selectors.workspaces_for_user(user=signed_in_user(request), query=query)
    page = Paginator(memberships, WORKSPACES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "tenants/workspace_list.html", {"page": page, "query": query})


@login_required
@require_http_methods(["GET", "POST"])
def workspace_create(request: AppRequest) -> HttpResponse:
    form = WorkspaceCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            workspace = services.workspace_create(user=signed_in_user(request), **form.cleaned_data)
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, f"Welcome to {workspace.name}.")
            return redirect("workspace_dashboard", workspace_slug=workspace.slug)
    return render(request, "tenants/workspace_create.html", {"form": form})


@require_http_methods(["GET", "POST"])
def invitation_accept(request: AppRequest, token: str) -> HttpResponse:
    try:
        invitation = services.invitation_lookup(token=token)
    except NotFound as exc:
        return render(request, "tenants/invitation.html", {"error": exc.message}, status=404)
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{reverse('account_login')}?{urlencode({'next': request.path})}")
        try:
            membership = services.invitation_accept(token=token, user=signed_in_user(request))
        except ApplicationError as exc:
            return render(
                request,
                "tenants/invitation.html",
                {"invitation": invitation, "error": exc.message},
                status=exc.status,
            )
        messages.success(request, f"You joined {membership.workspace.name} as {membership.role}.")
        return redirect("workspace_dashboard", workspace_slug=membership.workspace.slug)
    return render(request, "tenants/invitation.html", {"invitation": invitation})


def workspace_dashboard(request: AppRequest) -> HttpResponse:
    access = page_access(request)
    summary = selectors.workspace_summary(access=access)
    return render(request, "tenants/dashboard.html", {"summary": summary})


def _members_context(access: Access, invite_form: InviteForm | None = None) -> dict[str, Any]:
    return {
        "members": selectors.members_list(access=access),
        "invitations": selectors.invitations_pending(access=access),
        "invite_form": invite_form or InviteForm(actor_role=access.role or ""),
        "can_invite": access.can(Perm.MEMBERS_INVITE),
        "can_manage": access.can(Perm.MEMBERS_MANAGE),
        "role_choices": [(r.value, r.label) for r in assignable_roles(access.role or "")],
    }


def members(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.MEMBERS_VIEW)
    return render(request, "tenants/members.html", _members_context(access))


@require_POST
def member_invite(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.MEMBERS_INVITE)
    form = InviteForm(request.POST, actor_role=access.role or "")
    if form.is_valid():
        try:
            invitation, _token = services.invitation_create(access=access, **form.cleaned_data)
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, f"Invitation sent to {invitation.email}.")
            if request.htmx:
                return render(
                    request, "tenants/members.html#members-panel", _members_context(access)
                )
            return redirect("members", workspace_slug=access.workspace.slug)
    context = _members_context(access, invite_form=form)
    template = "tenants/members.html#members-panel" if request.htmx else "tenants/members.html"
    return render(request, template, context, status=400)


@require_POST
def member_role(request: AppRequest, membership_id: int) -> HttpResponse:
    access = page_access(request, Perm.MEMBERS_MANAGE)
    form = RoleForm(request.POST, actor_role=access.role or "")
    status = 200
    if form.is_valid():
        try:
            services.membership_change_role(
                access=access,
                membership_id=membership_id,
                role=form.cleaned_data["role"],
            )
            messages.success(request, "Role updated.")
        except ApplicationError as exc:
            messages.error(request, exc.message)
            status = exc.status
    else:
        messages.error(request, "Choose a role you are allowed to grant.")
        status = 400
    if request.htmx:
        return render(
            request, "tenants/members.html#members-panel", _members_context(access), status=status
        )
    return redirect("members", workspace_slug=access.workspace.slug)


@require_POST
def member_remove(request: AppRequest, membership_id: int) -> HttpResponse:
    access = page_access(request)
    try:
        leaving = (
            selectors.member_get(access=access, membership_id=membership_id).user_id
            == request.user.pk
        )
        services.membership_remove(access=access, membership_id=membership_id)
    except NotFound:
        raise  # the error middleware answers 404
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("members", workspace_slug=access.workspace.slug)
    if leaving:
        messages.success(request, f"You left {access.workspace.name}.")
        request.session.pop("last_workspace", None)
        return redirect("workspace_list")
    messages.success(request, "Member removed.")
    return redirect("members", workspace_slug=access.workspace.slug)


@require_POST
def invitation_revoke(request: AppRequest, invitation_id: int) -> HttpResponse:
    access = page_access(request, Perm.MEMBERS_INVITE)
    try:
        invitation = services.invitation_revoke(access=access, invitation_id=invitation_id)
        messages.success(request, f"Invitation for {invitation.email} revoked.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("members", workspace_slug=access.workspace.slug)


@require_http_methods(["GET", "POST"])
@never_cache  # the one-time secret must not land in a browser or proxy cache
def api_keys(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.API_KEYS_MANAGE)
    form = ApiKeyForm(request.POST or None)
    new_secret = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                key, new_secret = services.api_key_create(access=access, **form.cleaned_data)
            except ApplicationError as exc:
                form_add_application_error(form, exc)
                status = 400
            else:
                form = ApiKeyForm()
                messages.success(request, f"API key “{key.name}” created. Copy it now.")
        else:
            status = 400
    return render(
        request,
        "tenants/api_keys.html",
        {"keys": selectors.api_keys_list(access=access), "form": form, "new_secret": new_secret},
        status=status,
    )


@require_POST
def api_key_revoke(request: AppRequest, key_id: int) -> HttpResponse:
    access = page_access(request, Perm.API_KEYS_MANAGE)
    try:
        key = services.api_key_revoke(access=access, key_id=key_id)
        messages.success(request, f"API key “{key.name}” revoked.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("api_keys", workspace_slug=access.workspace.slug)


def audit_log(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.AUDIT_VIEW)
    action = request.GET.get("action", "")
    if action not in audit.Action.values:
        action = ""
    page = Paginator(selectors.audit_events(access=access, action=action), 50).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "tenants/audit.html",
        {"page": page, "action": action, "actions": audit.Action.choices},
    )


@require_http_methods(["GET", "POST"])
def workspace_settings(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.WORKSPACE_UPDATE)
    workspace = access.workspace
    form = WorkspaceSettingsForm(
        request.POST or None,
        initial={"name": workspace.name, "run_retention_days": workspace.run_retention_days},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if data["name"] != workspace.name:
                services.workspace_update(access=access, name=data["name"])
            if data["run_retention_days"] is not None:
                services.workspace_retention_update(access=access, days=data["run_retention_days"])
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("workspace_settings", workspace_slug=access.workspace.slug)
    return render(
        request, "tenants/settings.html", {"form": form}, status=400 if form.errors else 200
    )
