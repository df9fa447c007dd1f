"""ASGI entry point: HTTP through Django (but /mcp/w/… through the MCP endpoint, mcp_server, and
/a2a/… through the A2A dispatcher, a2a_server),
websockets through Channels with the session user and the workspace resolved before any
consumer runs."""

import logging
import os
from typing import Any

from django.core.asgi import get_asgi_application

# Unset means production, which refuses to start without its variables: a deployment that
# forgets DJANGO_SETTINGS_MODULE fails closed instead of running with development defaults
# (DEBUG on). manage.py (and so scripts/dev) and scripts/test choose their settings themselves.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
django_asgi_app = get_asgi_application()


from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from a2a_server.server import build_app as build_a2a_app  # noqa: E402
from billing.stripe_client import billing_mode  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402
from mcp_server.server import with_mcp  # noqa: E402
from tenants.channels import WorkspaceScopeMiddleware  # noqa: E402

logging.getLogger("billing").info(billing_mode())  # billing says on start whether it is on

# A2A (docs/a2a.md, decision 116): the official SDK's JSON-RPC dispatcher in a Starlette app
# under /a2a/; everything else is Django's.
a2a_app = build_a2a_app()


# MCP (docs/mcp.md, decision 114): /mcp/w/<slug>/ is the workspace's MCP endpoint.
django_or_mcp = with_mcp(django_asgi_app)


async def http_app(scope: Any, receive: Any, send: Any) -> None:
    app = a2a_app if scope["path"].startswith("/a2a/") else django_or_mcp
    await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(WorkspaceScopeMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)
