"""Trigger pages under /w/<slug>/workflows/<id>/triggers/ (included by workflows/urls.py)."""

from django.urls import path

from workflows import trigger_views as views

urlpatterns = [
    path("<int:workflow_id>/triggers/", views.trigger_list, name="workflow_triggers"),
    path(
        "<int:workflow_id>/triggers/webhook/",
        views.webhook_create,
        name="workflow_trigger_webhook_create",
    ),
    path(
        "<int:workflow_id>/triggers/schedule/",
        views.schedule_create,
        name="workflow_trigger_schedule_create",
    ),
    path(
        "<int:workflow_id>/triggers/preview/",
        views.schedule_preview,
        name="workflow_trigger_preview",
    ),
    path(
        "<int:workflow_id>/triggers/<int:trigger_id>/schedule/",
        views.schedule_edit,
        name="workflow_trigger_schedule_edit",
    ),
    path(
        "<int:workflow_id>/triggers/<int:trigger_id>/rotate/",
        views.webhook_rotate,
        name="workflow_trigger_rotate",
    ),
    path(
        "<int:workflow_id>/triggers/<int:trigger_id>/toggle/",
        views.trigger_toggle,
        name="workflow_trigger_toggle",
    ),
    path(
        "<int:workflow_id>/triggers/<int:trigger_id>/delete/",
        views.trigger_delete,
        name="workflow_trigger_delete",
    ),
]
