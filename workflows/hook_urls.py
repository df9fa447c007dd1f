"""Inbound hooks under /hooks/workflows/ (config/urls.py): no session or API key, every request
HMAC-signed (workflows/triggers.py). The workspace slug picks the schema the token lives in."""

from django.urls import path

from workflows import trigger_views

urlpatterns = [
    path("<slug:workspace>/<str:token>/", trigger_views.hook_trigger, name="workflow_hook_trigger"),
    path(
        "<slug:workspace>/resume/<str:resume_token>/",
        trigger_views.hook_resume,
        name="workflow_hook_resume",
    ),
]
