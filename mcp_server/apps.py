from django.apps import AppConfig


class McpServerConfig(AppConfig):
    """The workspace's Model Context Protocol endpoint (docs/mcp.md): chosen agents as MCP
    tools over Streamable HTTP. Below `privacy` in the import layers: it calls the agents'
    services and no app imports it; config/asgi.py mounts it."""

    name = "mcp_server"
    verbose_name = "MCP server"
