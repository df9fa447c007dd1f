from __future__ import annotations

from typing import cast

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from accounts.models import User
from tenants.models import Membership


class MembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    extra = 0
    fields = ("workspace", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("workspace",)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = (
        "email",
        "full_name",
        "workspace_count",
        "is_staff",
        "is_active",
        "last_login",
        "date_joined",
    )
    list_filter = ("is_staff", "is_superuser", "is_active", "date_joined")
    search_fields = ("email", "full_name")
    date_hierarchy = "date_joined"
    inlines = (MembershipInline,)
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name",)}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        # Workspace schemas hold rows that point at users (object permissions, later authored
        # agents and runs); deleting across every schema is not supported: deactivate instead.
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        users: QuerySet[User] = super().get_queryset(request)
        return users.annotate(_workspaces=Count("memberships"))

    @admin.display(description="Workspaces", ordering="_workspaces")
    def workspace_count(self, obj: User) -> int:
        return cast(int, obj._workspaces)  # type: ignore[attr-defined]
