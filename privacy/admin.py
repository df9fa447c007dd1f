"""Back-office: staff export, delete (with the grace period), restore and purge workspaces, and
see every export archive. The workspace admin is tenants'; this layer adds the data-rights
actions to it (privacy sits above tenants, so tenants' admin cannot name these services)."""

from __future__ import annotations

from typing import cast

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from accounts.models import User
from core.exceptions import ApplicationError
from core.queue import enqueue
from privacy import services
from privacy.models import AccountErasure, ExportJob
from tenants.admin import WorkspaceAdmin
from tenants.models import Workspace


def _staff(request: HttpRequest) -> User:
    return cast(User, request.user)


@admin.action(description="Export the selected workspaces (archive built on a worker)")
def export_workspaces(
    modeladmin: admin.ModelAdmin[Workspace], request: HttpRequest, queryset: QuerySet[Workspace]
) -> None:
    for workspace in queryset.filter(purged_at__isnull=True, is_template=False):
        services.workspace_export_request(staff=_staff(request), workspace=workspace)
    modeladmin.message_user(
        request, "Exports queued; download them from Data rights › Export jobs when ready."
    )


@admin.action(description="Delete the selected workspaces (restorable during the grace period)")
def delete_workspaces(
    modeladmin: admin.ModelAdmin[Workspace], request: HttpRequest, queryset: QuerySet[Workspace]
) -> None:
    for workspace in queryset:
        try:
            services.workspace_deletion_request(
                staff=_staff(request), workspace=workspace, confirm=workspace.slug
            )
        except ApplicationError as exc:
            modeladmin.message_user(request, f"{workspace}: {exc.message}", messages.WARNING)
        else:
            modeladmin.message_user(request, f"{workspace} is scheduled for deletion.")


@admin.action(description="Restore the selected workspaces")
def restore_workspaces(
    modeladmin: admin.ModelAdmin[Workspace], request: HttpRequest, queryset: QuerySet[Workspace]
) -> None:
    for workspace in queryset.filter(deletion_requested_at__isnull=False):
        try:
            services.workspace_restore(workspace=workspace, by=_staff(request))
        except ApplicationError as exc:
            modeladmin.message_user(request, f"{workspace}: {exc.message}", messages.WARNING)
        else:
            modeladmin.message_user(request, f"{workspace} is restored.")


@admin.action(description="Purge the selected deleted workspaces now (skips the grace period)")
def purge_workspaces(
    modeladmin: admin.ModelAdmin[Workspace], request: HttpRequest, queryset: QuerySet[Workspace]
) -> None:
    due = queryset.filter(deletion_requested_at__isnull=False, purged_at__isnull=True)
    for workspace_id in due.values_list("pk", flat=True):
        enqueue("privacy.purge_workspace", workspace_id)
    modeladmin.message_user(request, f"{due.count()} purge(s) queued on the workers.")


class DataRightsWorkspaceAdmin(WorkspaceAdmin):
    list_display = (*WorkspaceAdmin.list_display, "deletion_state")  # type: ignore[assignment]
    list_filter = (*WorkspaceAdmin.list_filter, "deletion_requested_at", "purged_at")  # type: ignore[assignment]
    readonly_fields = (  # type: ignore[assignment]
        *WorkspaceAdmin.readonly_fields,
        "deletion_requested_at",
        "deletion_requested_by",
        "purge_after",
        "purged_at",
    )
    actions = (export_workspaces, delete_workspaces, restore_workspaces, purge_workspaces)

    @admin.display(description="Deletion")
    def deletion_state(self, obj: Workspace) -> str:
        if obj.purged_at is not None:
            return f"purged {obj.purged_at:%Y-%m-%d}"
        if obj.purge_after is not None:
            return f"scheduled, final {obj.purge_after:%Y-%m-%d}"
        return "—"

    def has_delete_permission(self, request: HttpRequest, obj: Workspace | None = None) -> bool:
        # Deleting goes through the grace period (the actions above), never straight away.
        return False


admin.site.unregister(Workspace)
admin.site.register(Workspace, DataRightsWorkspaceAdmin)


@admin.register(ExportJob)
class ExportJobAdmin(admin.ModelAdmin):
    list_display = (
        "pk",
        "kind",
        "workspace",
        "requested_by",
        "status",
        "progress",
        "created_at",
        "download",
    )
    list_filter = ("kind", "status")
    search_fields = ("workspace__slug", "requested_by__email")
    readonly_fields = [f.name for f in ExportJob._meta.fields]

    @admin.display(description="Archive")
    def download(self, obj: ExportJob) -> str:
        if not obj.is_downloadable:
            return "—"
        # The download view serves the person who asked only.
        url = reverse("export_download", kwargs={"export_id": obj.pk})
        return format_html('<a href="{}">Download (requester only)</a>', url)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ExportJob | None = None) -> bool:
        return False


@admin.register(AccountErasure)
class AccountErasureAdmin(admin.ModelAdmin):
    list_display = (
        "user",
        "rows_erased",
        "swept_through_workspace_id",
        "created_at",
        "finished_at",
    )
    readonly_fields = [f.name for f in AccountErasure._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: AccountErasure | None = None
    ) -> bool:
        return False
