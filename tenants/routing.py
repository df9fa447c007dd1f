from django.urls import path

from agents.chat.routing import websocket_urlpatterns as chat_websocket_urlpatterns
from tenants.consumers import PresenceConsumer
from workflows.live.routing import websocket_urlpatterns as workflow_websocket_urlpatterns

websocket_urlpatterns = [
    path("ws/w/<slug:workspace_slug>/presence/", PresenceConsumer.as_asgi()),
    *chat_websocket_urlpatterns,  # ws/w/<slug>/conversations/<id>/
    *workflow_websocket_urlpatterns,  # ws/w/<slug>/workflows/runs/<id>/
]
