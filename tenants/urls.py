from django.urls import URLPattern, URLResolver, path

from tenants import views
from tenants.sso import views as sso_views

# The workspace's own pages under /w/<slug>/ (config/urls.py adds the other apps' pages).
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
    path("settings/sign-in/", sso_views.sign_in_settings, name="sign_in_settings"),
    path("settings/sign-in/saml/", sso_views.sign_in_saml, name="sign_in_saml"),
    path("settings/sign-in/idp/remove/", sso_views.sign_in_idp_remove, name="sign_in_idp_remove"),
    path("settings/sign-in/policy/", sso_views.sign_in_policy, name="sign_in_policy"),
    path("settings/sign-in/domains/", sso_views.email_domain_claim, name="email_domain_claim"),
    path(
        "settings/sign-in/domains/<int:domain_id>/verify/",
        sso_views.email_domain_verify,
        name="email_domain_verify",
    ),
    path(
        "settings/sign-in/domains/<int:domain_id>/remove/",
        sso_views.email_domain_remove,
        name="email_domain_remove",
    ),
]

urlpatterns = [
    path("", views.landing, name="landing"),
    path("go/", views.workspace_home_redirect, name="workspace_home_redirect"),
    path("workspaces/", views.workspace_list, name="workspace_list"),
    path("workspaces/new/", views.workspace_create, name="workspace_create"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
]
