from django.urls import path

from workflows.builder.consumers import CanvasConsumer
from workflows.live.consumers import RunConsumer

websocket_urlpatterns = [
    path("ws/w/<slug:workspace_slug>/workflows/runs/<int:run_id>/", RunConsumer.as_asgi()),
    path(
        "ws/w/<slug:workspace_slug>/workflows/<int:workflow_id>/canvas/",
        CanvasConsumer.as_asgi(),
    ),
]
