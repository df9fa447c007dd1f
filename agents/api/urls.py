from django.urls import path

from agents.api import views

urlpatterns = [
    path("agents/", views.AgentListApi.as_view(), name="api-agents"),
    path("webhook-secret/", views.WebhookSecretApi.as_view(), name="api-webhook-secret"),
    path("agents/<int:pk>/", views.AgentDetailApi.as_view(), name="api-agent"),
    path("agents/<int:pk>/runs/", views.AgentRunListApi.as_view(), name="api-agent-runs"),
    path(
        "agents/<int:pk>/runs/<int:run_id>/",
        views.AgentRunDetailApi.as_view(),
        name="api-agent-run",
    ),
]
