"""Workspace pages under /w/<slug>/workflows/: the builder (workflows/builder/) and the runs
(workflows/live/)."""

from django.urls import include, path

urlpatterns = [
    path("", include("workflows.builder.urls")),
    path("", include("workflows.live.urls")),
]
