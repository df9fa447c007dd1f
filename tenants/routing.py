from django.urls import path

from tenants.consumers import PresenceConsumer

websocket_urlpatterns = [
    path("ws/w/<slug:workspace_slug>/presence/", PresenceConsumer.as_asgi()),
]
