from django.urls import URLPattern, URLResolver, include, path

from agents import views as agent_views
from tenants import views

workspace_patterns: list[URLPattern | URLResolver] = [
    path("", views.workspace_dashboard, name="workspace_dashboard"),
    path("members/", views.members, name="members"),
    path("members/invite/", views.member_invite, name="member_invite"),
    path("members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path(
        "invitations/<int:invitation_id>/revoke/", views.invitation_revoke, name="invitation_revoke"
    ),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("audit/", views.audit_log, name="audit_log"),
    path("settings/", views.workspace_settings, name="workspace_settings"),
    path("agents/", include("agents.urls")),
    path("workflows/", include("workflows.urls")),
    path("knowledge/", include("agents.knowledge.urls")),
    path("conversations/", include("agents.chat.urls")),
    path("outbound/", include("agents.outbound.urls")),
    path("marketplace/", include("marketplace.workspace_urls")),
    path("usage/", agent_views.usage, name="usage"),
    path("usage/budget/", agent_views.usage_budget, name="usage_budget"),
    path("providers/", agent_views.providers, name="providers"),
    path("models/", agent_views.model_aliases, name="model_aliases"),
    path("models/new/", agent_views.model_alias_edit, name="model_alias_create"),
    path("models/<int:alias_id>/", agent_views.model_alias_edit, name="model_alias_edit"),
    path(
        "models/<int:alias_id>/delete/", agent_views.model_alias_delete, name="model_alias_delete"
    ),
    path(
        "providers/<int:credential_id>/delete/", agent_views.provider_delete, name="provider_delete"
    ),
    path("providers/<int:credential_id>/check/", agent_views.provider_check, name="provider_check"),
]

urlpatterns = [
    path("", views.landing, name="landing"),
    path("go/", views.workspace_home_redirect, name="workspace_home_redirect"),
    path("workspaces/", views.workspace_list, name="workspace_list"),
    path("workspaces/new/", views.workspace_create, name="workspace_create"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    # Every workspace page: WorkspaceMiddleware checks membership and switches the schema.
    path("w/<slug:workspace_slug>/", include(workspace_patterns)),
]
