"""Workspace data in the Django admin, one workspace at a time.

The admin lives on the public schema; agents, runs, the ledger... live in each workspace's
schema. `WorkspaceScopedAdmin` is the base for the admin classes of those models:

- Staff first choose a workspace (`<model>/workspace/`, a list with search). The choice is kept
  in the session; until there is one, every page of these models sends them to the chooser.
- Each view (list, add, change, delete, delete-selected) runs with that workspace's schema
  active and is rendered before the schema is switched back (admin pages are lazy
  `TemplateResponse`s: rendering after the switch would query the public schema), so one page
  only ever shows one workspace's rows. A banner on every page names the workspace.
- Every POST form carries the workspace it was rendered for (`_workspace`). A POST whose
  workspace is not the one chosen now (the choice changed in another tab) changes nothing.
- Admin log entries name the workspace in their object text (the log is in the public schema
  and object ids repeat across workspaces), and the per-object history page is not offered,
  for the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.admin.options import get_content_type_for_model
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.template.response import SimpleTemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from core.admin import ReadOnlyAdmin
from tenants.models import Workspace
from tenants.schemas import activate, activate_public, live_workspaces

SESSION_KEY = "admin_workspace_id"
FORM_FIELD = "_workspace"
CHOOSER_LIMIT = 100


class ScopedRequest(HttpRequest):
    """An admin request with the chosen workspace attached (for type checking)."""

    admin_workspace: Workspace | None


def request_workspace(request: HttpRequest) -> Workspace | None:
    """The workspace the current admin view runs in (set by `WorkspaceScopedAdmin`)."""
    return cast(Workspace | None, getattr(request, "admin_workspace", None))


def chosen_workspace(request: HttpRequest) -> Workspace | None:
    workspace_id = request.session.get(SESSION_KEY)
    if workspace_id is None:
        return None
    return live_workspaces().filter(pk=workspace_id).first()


def workspaces_to_choose(query: str = "") -> QuerySet[Workspace]:
    workspaces = live_workspaces()
    if query:
        workspaces = workspaces.filter(
            Q(name__icontains=query) | Q(slug__icontains=query) | Q(schema_name__icontains=query)
        )
    return workspaces.order_by("name", "slug")


class WorkspaceScopedAdmin(admin.ModelAdmin):
    """Base admin for a model that lives in workspace schemas (see the module docstring)."""

    change_list_template = "admin/tenant_scoped/change_list.html"
    change_form_template = "admin/tenant_scoped/change_form.html"
    delete_confirmation_template = "admin/tenant_scoped/delete_confirmation.html"
    delete_selected_confirmation_template = "admin/tenant_scoped/delete_selected_confirmation.html"

    # --- URLs and the chooser -------------------------------------------------------------

    def _url_name(self, view: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    def get_urls(self) -> list[URLPattern]:
        chooser = path(
            "workspace/",
            self.admin_site.admin_view(self.workspace_view),
            name=self._url_name("workspace"),
        )
        return [chooser, *super().get_urls()]

    def _changelist_url(self) -> str:
        return reverse(f"{self.admin_site.name}:{self._url_name('changelist')}")

    def _chooser_url(self, next_url: str = "") -> str:
        url = reverse(f"{self.admin_site.name}:{self._url_name('workspace')}")
        return f"{url}?{urlencode({'next': next_url})}" if next_url else url

    def workspace_view(self, request: HttpRequest) -> HttpResponse:
        """GET: the list of workspaces (with search). POST: remember the one chosen."""
        if not self.has_view_or_change_permission(request):
            return redirect("admin:index")
        next_url = request.POST.get("next") or request.GET.get("next") or ""
        if not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            next_url = ""
        if request.method == "POST":
            workspace = workspaces_to_choose().filter(pk=request.POST.get("workspace")).first()
            if workspace is not None:
                request.session[SESSION_KEY] = workspace.pk
                messages.success(
                    request,
                    f"Now showing the data of workspace {workspace.name} ({workspace.slug}).",
                )
                return HttpResponseRedirect(next_url or self._changelist_url())
            messages.error(request, "Choose one of the workspaces listed.")
        query = request.GET.get("q", "").strip()
        workspaces = workspaces_to_choose(query)
        context = {
            **self.admin_site.each_context(request),
            "title": "Choose a workspace",
            "subtitle": f"{self.opts.verbose_name_plural} are kept per workspace",
            "opts": self.opts,
            "workspaces": workspaces[:CHOOSER_LIMIT],
            "more": workspaces.count() > CHOOSER_LIMIT,
            "query": query,
            "next": next_url,
            "current": chosen_workspace(request),
        }
        return render(request, "admin/tenant_scoped/choose_workspace.html", context)

    # --- Running a view inside the chosen workspace -----------------------------------------

    def _in_workspace(
        self, request: HttpRequest, view: Callable[..., HttpResponse], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        workspace = chosen_workspace(request)
        scoped = cast(ScopedRequest, request)
        scoped.admin_workspace = workspace
        if workspace is None:
            messages.info(request, "Choose the workspace whose data you want to see.")
            return redirect(self._chooser_url(request.get_full_path()))
        if request.method == "POST" and request.POST.get(FORM_FIELD) != workspace.schema_name:
            messages.error(
                request,
                "Nothing was changed: that form belonged to another workspace than the one "
                f"chosen now ({workspace.name}, {workspace.slug}); the choice was changed in "
                "another tab. Check the page and try again.",
            )
            return redirect(self._changelist_url())
        activate(workspace)
        try:
            response = view(request, *args, **kwargs)
            if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
                response.render()  # now, while the workspace's schema is active
            return response
        finally:
            activate_public()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return self._in_workspace(request, super().changelist_view, extra_context)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return self._in_workspace(
            request, super().changeform_view, object_id, form_url, extra_context
        )

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return self._in_workspace(request, super().delete_view, object_id, extra_context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # LogEntry rows (public schema) cannot tell object 7 of one workspace from object 7 of
        # another, so a per-object history would mix workspaces.
        messages.info(request, "Change history is not shown for workspace data.")
        return redirect(self._changelist_url())

    # --- Admin log entries that name the workspace ------------------------------------------

    def _log(
        self, request: HttpRequest, objects: list[Model], flag: int, message: Any
    ) -> list[LogEntry]:
        workspace = request_workspace(request)
        where = f" · workspace {workspace.slug}" if workspace is not None else ""
        text = json.dumps(message) if isinstance(message, list) else str(message or "")
        return LogEntry.objects.bulk_create(
            [
                LogEntry(
                    user_id=int(request.user.pk or 0),
                    content_type_id=get_content_type_for_model(obj).pk,
                    object_id=str(obj.pk),
                    object_repr=f"{obj}"[: 200 - len(where)] + where,
                    action_flag=flag,
                    change_message=text,
                )
                for obj in objects
            ]
        )

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> LogEntry:
        return self._log(request, [obj], ADDITION, message)[0]

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> LogEntry:
        return self._log(request, [obj], CHANGE, message)[0]

    def log_deletions(self, request: HttpRequest, queryset: Any) -> list[LogEntry]:
        return self._log(request, list(queryset), DELETION, "")


class ReadOnlyScopedAdmin(ReadOnlyAdmin, WorkspaceScopedAdmin):
    """Staff look, never touch."""


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
