"""Workspace pages of the A2A server, under /w/<slug>/a2a/ (config/urls.py). The A2A
endpoints themselves are not Django URLs: config/asgi.py mounts a2a_server.server."""

from django.urls import URLPattern, path

from a2a_server import views

urlpatterns: list[URLPattern] = [
    path("agents/<int:agent_id>/expose/", views.agent_expose, name="a2a_agent_expose"),
]
