"""Every websocket route, composed from the apps' own (the composition root; config/asgi.py)."""

from agents.chat.routing import websocket_urlpatterns as chat_websocket_urlpatterns
from tenants.routing import websocket_urlpatterns as tenant_websocket_urlpatterns
from workflows.live.routing import websocket_urlpatterns as workflow_websocket_urlpatterns

websocket_urlpatterns = [
    *tenant_websocket_urlpatterns,  # ws/w/<slug>/presence/
    *chat_websocket_urlpatterns,  # ws/w/<slug>/conversations/<id>/
    *workflow_websocket_urlpatterns,  # ws/w/<slug>/workflows/runs/<id>/, …/workflows/<id>/canvas/
]
