from __future__ import annotations

from typing import cast

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from accounts.admin import UserAdmin
from accounts.models import User
from tenants.models import (
    ApiKey,
    AuditEvent,
    Domain,
    EmailDomain,
    Invitation,
    Membership,
    Workspace,
    WorkspaceSignIn,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "schema_name",
        "member_count",
        "created_by",
        "created_at",
        "is_template",
    )
    list_filter = ("is_template", "created_at")
    search_fields = ("name", "slug", "schema_name", "created_by__email")
    readonly_fields = ("schema_name", "created_at", "updated_at", "is_template")
    exclude = ("webhook_secret_encrypted",)
    date_hierarchy = "created_at"
    inlines = (MembershipInline, DomainInline)
    autocomplete_fields = ("created_by",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workspace]:
        workspaces: QuerySet[Workspace] = (
            super()
            .get_queryset(request)
            .select_related("created_by")
            .annotate(members_total=Count("memberships"))
        )
        return workspaces

    @admin.display(description="Members", ordering="members_total")
    def member_count(self, obj: Workspace) -> int:
        return cast(int, obj.members_total)  # annotated by get_queryset

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Workspaces are provisioned (schema clone + owner) by the sign-up flow or the API.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Workspace | None = None) -> bool:
        return bool(obj is None or not obj.is_template) and super().has_delete_permission(request)


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("domain", "tenant", "is_primary")
    list_filter = ("is_primary",)
    search_fields = ("domain", "tenant__name", "tenant__slug")
    autocomplete_fields = ("tenant",)


@admin.register(WorkspaceSignIn)
class WorkspaceSignInAdmin(admin.ModelAdmin):
    """Break-glass for a workspace whose IdP is gone: staff may turn its requirements off. The
    IdP itself is the owner's to change (the client secret is never shown here)."""

    list_display = ("workspace", "display_name", "kind", "sso_required", "mfa_required")
    list_filter = ("kind", "sso_required", "mfa_required")
    search_fields = ("workspace__name", "workspace__slug", "oidc_server_url")
    fields = (
        "workspace",
        "display_name",
        "oidc_server_url",
        "oidc_client_id",
        "kind",
        "saml_entity_id",
        "saml_sso_url",
        "sso_required",
        "mfa_required",
    )
    readonly_fields = (
        "workspace",
        "display_name",
        "oidc_server_url",
        "oidc_client_id",
        "kind",
        "saml_entity_id",
        "saml_sso_url",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(EmailDomain)
class EmailDomainAdmin(admin.ModelAdmin):
    list_display = ("domain", "workspace", "verified_at", "last_checked_at")
    list_filter = (("verified_at", admin.EmptyFieldListFilter),)
    search_fields = ("domain", "workspace__name", "workspace__slug")
    readonly_fields = (
        "workspace",
        "domain",
        "token",
        "verified_at",
        "last_checked_at",
        "last_error",
    )
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "workspace", "role", "created_at")
    list_filter = ("role", "created_at")
    search_fields = ("user__email", "workspace__name", "workspace__slug")
    list_select_related = ("user", "workspace")
    autocomplete_fields = ("user", "workspace")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = (
        "email",
        "workspace",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "revoked_at",
    )
    list_filter = (
        "role",
        ("accepted_at", admin.EmptyFieldListFilter),
        ("revoked_at", admin.EmptyFieldListFilter),
    )
    search_fields = ("email", "workspace__name", "workspace__slug")
    list_select_related = ("workspace", "invited_by")
    readonly_fields = ("token_hash", "created_at", "accepted_at", "accepted_by")
    autocomplete_fields = ("workspace", "invited_by")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "prefix",
        "workspace",
        "scopes",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("name", "prefix", "workspace__name", "workspace__slug")
    list_select_related = ("workspace", "created_by")
    readonly_fields = ("prefix", "key_hash", "created_at", "last_used_at", "created_by")
    exclude = ()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are created in the workspace, where the secret is shown once


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "action",
        "actor_label",
        "workspace_link",
        "target_label",
        "ip_address",
    )
    list_filter = ("action", "created_at")
    search_fields = ("actor_label", "target_label", "workspace__slug", "ip_address", "request_id")
    date_hierarchy = "created_at"
    list_select_related = ("workspace",)

    @admin.display(description="Workspace", ordering="workspace__slug")
    def workspace_link(self, obj: AuditEvent) -> str:
        if obj.workspace is None:
            return "—"
        url = reverse("admin:tenants_workspace_change", args=[obj.workspace_id])
        return format_html('<a href="{}">{}</a>', url, obj.workspace.slug)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False


class UserMembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    extra = 0
    fields = ("workspace", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("workspace",)


class UserWithWorkspacesAdmin(UserAdmin):
    """accounts' user admin with the user's workspaces (their memberships) added."""

    list_display = (*UserAdmin.list_display[:2], "workspace_count", *UserAdmin.list_display[2:])
    inlines = (UserMembershipInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        users: QuerySet[User] = super().get_queryset(request)
        return users.annotate(workspaces_total=Count("memberships"))

    @admin.display(description="Workspaces", ordering="workspaces_total")
    def workspace_count(self, obj: User) -> int:
        return cast(int, obj.workspaces_total)  # type: ignore[attr-defined]


admin.site.unregister(User)
admin.site.register(User, UserWithWorkspacesAdmin)
