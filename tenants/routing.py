from django.urls import path

from agents.chat.routing import websocket_urlpatterns as chat_websocket_urlpatterns
from tenants.consumers import PresenceConsumer

websocket_urlpatterns = [
    path("ws/w/<slug:workspace_slug>/presence/", PresenceConsumer.as_asgi()),
    *chat_websocket_urlpatterns,  # ws/w/<slug>/conversations/<id>/
]
