"""Run pages under /w/<slug>/workflows/ (included by workflows/urls.py)."""

from django.urls import path

from workflows.live import views

urlpatterns = [
    path("<int:workflow_id>/run/", views.workflow_run_start, name="workflow_run_start"),
    path("runs/", views.workflow_run_list, name="workflow_run_list"),
    path("<int:workflow_id>/runs/", views.workflow_run_list, name="workflow_run_list"),
    path("runs/<int:run_id>/", views.workflow_run_detail, name="workflow_run_detail"),
    path("runs/<int:run_id>/cancel/", views.workflow_run_cancel, name="workflow_run_cancel"),
    path("runs/<int:run_id>/resume/", views.workflow_run_resume, name="workflow_run_resume"),
    path("runs/<int:run_id>/rerun/", views.workflow_run_rerun, name="workflow_run_rerun"),
    path(
        "runs/<int:run_id>/steps/<int:step_id>/retry/",
        views.workflow_step_retry,
        name="workflow_step_retry",
    ),
    path(
        "runs/<int:run_id>/steps/<int:step_id>/decide/",
        views.workflow_step_decide,
        name="workflow_step_decide",
    ),
]
