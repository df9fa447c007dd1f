"""Remote MCP servers whose tools agents may use."""

from django.urls import URLPattern, path

from agents.mcp_servers import views

urlpatterns: list[URLPattern] = [
    path("", views.connections, name="mcp_connections"),
    path("<int:connection_id>/refresh/", views.connection_refresh, name="mcp_connection_refresh"),
    path("<int:connection_id>/remove/", views.connection_delete, name="mcp_connection_delete"),
]
