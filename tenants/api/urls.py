from django.urls import path

from tenants.api import views

urlpatterns = [
    path("workspaces/", views.WorkspaceListApi.as_view(), name="api-workspaces"),
    path("workspace/", views.WorkspaceDetailApi.as_view(), name="api-workspace"),
    path("members/", views.MemberListApi.as_view(), name="api-members"),
    path("members/<int:pk>/", views.MemberDetailApi.as_view(), name="api-member"),
    path("invitations/", views.InvitationListApi.as_view(), name="api-invitations"),
    path("invitations/<int:pk>/", views.InvitationDetailApi.as_view(), name="api-invitation"),
    path("api-keys/", views.ApiKeyListApi.as_view(), name="api-keys"),
    path("api-keys/<int:pk>/", views.ApiKeyDetailApi.as_view(), name="api-key"),
    path("audit-events/", views.AuditEventListApi.as_view(), name="api-audit-events"),
]
