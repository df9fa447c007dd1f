"""Workspace pages under /w/<slug>/workflows/: the builder (workflows/builder/), the runs
(workflows/live/) and the triggers (workflows/trigger_urls.py)."""

from django.urls import include, path

urlpatterns = [
    path("", include("workflows.builder.urls")),
    path("", include("workflows.live.urls")),
    path("", include("workflows.trigger_urls")),
]
