from django.urls import path

from agents.chat.consumers import ConversationConsumer

websocket_urlpatterns = [
    path(
        "ws/w/<slug:workspace_slug>/conversations/<int:conversation_id>/",
        ConversationConsumer.as_asgi(),
    ),
]
