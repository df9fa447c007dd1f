"""Workflow API under /api/v1/ (config/urls.py), next to the agents' API. Runs and steps have
workspace-wide ids, so they live under workflows/runs/ and workflows/steps/ like the run pages
under /w/<slug>/workflows/runs/."""

from django.urls import path

from workflows.api import views

urlpatterns = [
    path("workflows/", views.WorkflowListApi.as_view(), name="api-workflows"),
    path("workflows/import/", views.WorkflowImportApi.as_view(), name="api-workflow-import"),
    path("workflows/templates/", views.TemplateListApi.as_view(), name="api-workflow-templates"),
    path(
        "workflows/templates/<slug:key>/",
        views.TemplateDetailApi.as_view(),
        name="api-workflow-template",
    ),
    path(
        "workflows/templates/<slug:key>/instantiate/",
        views.TemplateInstantiateApi.as_view(),
        name="api-workflow-template-instantiate",
    ),
    path("workflows/runs/", views.RunListApi.as_view(), name="api-workflow-runs-all"),
    path("workflows/runs/<int:run_id>/", views.RunDetailApi.as_view(), name="api-workflow-run"),
    path(
        "workflows/runs/<int:run_id>/cancel/",
        views.RunCancelApi.as_view(),
        name="api-workflow-run-cancel",
    ),
    path(
        "workflows/runs/<int:run_id>/resume/",
        views.RunResumeApi.as_view(),
        name="api-workflow-run-resume",
    ),
    path(
        "workflows/runs/<int:run_id>/rerun/",
        views.RunRerunApi.as_view(),
        name="api-workflow-run-rerun",
    ),
    path("workflows/steps/<int:step_id>/", views.StepDetailApi.as_view(), name="api-workflow-step"),
    path(
        "workflows/steps/<int:step_id>/retry/",
        views.StepRetryApi.as_view(),
        name="api-workflow-step-retry",
    ),
    path(
        "workflows/steps/<int:step_id>/approval/",
        views.StepApprovalApi.as_view(),
        name="api-workflow-step-approval",
    ),
    path("workflows/<int:pk>/", views.WorkflowDetailApi.as_view(), name="api-workflow"),
    path(
        "workflows/<int:pk>/archive/",
        views.WorkflowArchiveApi.as_view(),
        name="api-workflow-archive",
    ),
    path(
        "workflows/<int:pk>/restore/",
        views.WorkflowRestoreApi.as_view(),
        name="api-workflow-restore",
    ),
    path(
        "workflows/<int:pk>/export/", views.WorkflowExportApi.as_view(), name="api-workflow-export"
    ),
    path(
        "workflows/<int:pk>/versions/", views.VersionListApi.as_view(), name="api-workflow-versions"
    ),
    path(
        "workflows/<int:pk>/versions/diff/",
        views.VersionDiffApi.as_view(),
        name="api-workflow-version-diff",
    ),
    path(
        "workflows/<int:pk>/versions/<int:number>/",
        views.VersionDetailApi.as_view(),
        name="api-workflow-version",
    ),
    path(
        "workflows/<int:pk>/versions/<int:number>/steps/<str:step_id>/test/",
        views.VersionStepTestApi.as_view(),
        name="api-workflow-version-step-test",
    ),
    path(
        "workflows/<int:pk>/versions/<int:number>/publish/",
        views.VersionPublishApi.as_view(),
        name="api-workflow-version-publish",
    ),
    path(
        "workflows/<int:pk>/versions/<int:number>/rollback/",
        views.VersionRollbackApi.as_view(),
        name="api-workflow-version-rollback",
    ),
    path("workflows/<int:pk>/runs/", views.WorkflowRunListApi.as_view(), name="api-workflow-runs"),
]
