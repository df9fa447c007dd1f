"""Outbound HTTP from agents: the workspace allowlist of hosts."""

from django.urls import URLPattern, path

from agents.outbound import views

urlpatterns: list[URLPattern] = [
    path("", views.hosts, name="outbound_hosts"),
    path("<int:host_id>/remove/", views.host_remove, name="outbound_host_remove"),
]
