from django.urls import path

from workflows.live.consumers import RunConsumer

websocket_urlpatterns = [
    path("ws/w/<slug:workspace_slug>/workflows/runs/<int:run_id>/", RunConsumer.as_asgi()),
]
