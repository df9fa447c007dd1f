"""Builder pages under /w/<slug>/workflows/ (included by workflows/urls.py): the list, the
template gallery, describe-a-workflow, import, and per workflow the builder, its edits, the
JSON/YAML view, versions, publish, rollback and export."""

from django.urls import path

from workflows.builder import views

urlpatterns = [
    path("", views.workflow_list, name="workflow_list"),
    path("new/", views.workflow_create, name="workflow_create"),
    path("templates/", views.workflow_templates, name="workflow_templates"),
    path("templates/<slug:key>/use/", views.workflow_template_use, name="workflow_template_use"),
    path("describe/", views.workflow_describe, name="workflow_describe"),
    path("describe/create/", views.workflow_describe_create, name="workflow_describe_create"),
    path("import/", views.workflow_import, name="workflow_import"),
    path("card/", views.workflow_dashboard_card, name="workflow_dashboard_card"),
    path("<int:workflow_id>/", views.workflow_detail, name="workflow_detail"),
    path("<int:workflow_id>/steps/add/", views.workflow_step_add, name="workflow_step_add"),
    path(
        "<int:workflow_id>/steps/<str:step_id>/save/",
        views.workflow_step_save,
        name="workflow_step_save",
    ),
    path(
        "<int:workflow_id>/steps/<str:step_id>/delete/",
        views.workflow_step_delete,
        name="workflow_step_delete",
    ),
    path("<int:workflow_id>/edges/add/", views.workflow_edge_add, name="workflow_edge_add"),
    path(
        "<int:workflow_id>/edges/delete/", views.workflow_edge_delete, name="workflow_edge_delete"
    ),
    path("<int:workflow_id>/inputs/", views.workflow_inputs_save, name="workflow_inputs_save"),
    path("<int:workflow_id>/settings/", views.workflow_settings, name="workflow_settings"),
    path("<int:workflow_id>/archive/", views.workflow_archive, name="workflow_archive"),
    path("<int:workflow_id>/restore/", views.workflow_restore, name="workflow_restore"),
    path("<int:workflow_id>/source/", views.workflow_source, name="workflow_source"),
    path("<int:workflow_id>/versions/", views.workflow_versions, name="workflow_versions"),
    path(
        "<int:workflow_id>/versions/<int:number>/publish/",
        views.workflow_version_publish,
        name="workflow_version_publish",
    ),
    path(
        "<int:workflow_id>/versions/<int:number>/rollback/",
        views.workflow_version_rollback,
        name="workflow_version_rollback",
    ),
    path("<int:workflow_id>/export/", views.workflow_export, name="workflow_export"),
    path(
        "<int:workflow_id>/import/",
        views.workflow_import_version,
        name="workflow_import_version",
    ),
]
