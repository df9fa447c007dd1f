"""Builder pages under /w/<slug>/workflows/ (included by workflows/urls.py): the list, the
template gallery, describe-a-workflow, import, and per workflow the builder, its edits, the
JSON/YAML view, versions, publish, rollback and export."""

from django.urls import path

from workflows.builder.views import (
    canvas,
    dashboard,
    describe,
    details,
    editing,
    export_import,
    listing,
    page,
    source,
    step_test,
    versions,
)

urlpatterns = [
    path("", listing.workflow_list, name="workflow_list"),
    path("new/", listing.workflow_create, name="workflow_create"),
    path("templates/", listing.workflow_templates, name="workflow_templates"),
    path("templates/<slug:key>/use/", listing.workflow_template_use, name="workflow_template_use"),
    path("describe/", describe.workflow_describe, name="workflow_describe"),
    path("describe/create/", describe.workflow_describe_create, name="workflow_describe_create"),
    path("import/", export_import.workflow_import, name="workflow_import"),
    path("card/", dashboard.workflow_dashboard_card, name="workflow_dashboard_card"),
    path("<int:workflow_id>/", page.workflow_detail, name="workflow_detail"),
    path("<int:workflow_id>/canvas/", canvas.workflow_canvas, name="workflow_canvas"),
    path("<int:workflow_id>/steps/add/", editing.workflow_step_add, name="workflow_step_add"),
    path(
        "<int:workflow_id>/steps/<str:step_id>/save/",
        editing.workflow_step_save,
        name="workflow_step_save",
    ),
    path(
        "<int:workflow_id>/steps/<str:step_id>/delete/",
        editing.workflow_step_delete,
        name="workflow_step_delete",
    ),
    path(
        "<int:workflow_id>/steps/<str:step_id>/test/",
        step_test.workflow_step_test,
        name="workflow_step_test",
    ),
    path("<int:workflow_id>/edges/add/", editing.workflow_edge_add, name="workflow_edge_add"),
    path(
        "<int:workflow_id>/edges/delete/", editing.workflow_edge_delete, name="workflow_edge_delete"
    ),
    path("<int:workflow_id>/inputs/", editing.workflow_inputs_save, name="workflow_inputs_save"),
    path("<int:workflow_id>/settings/", details.workflow_settings, name="workflow_settings"),
    path("<int:workflow_id>/archive/", details.workflow_archive, name="workflow_archive"),
    path("<int:workflow_id>/restore/", details.workflow_restore, name="workflow_restore"),
    path("<int:workflow_id>/source/", source.workflow_source, name="workflow_source"),
    path("<int:workflow_id>/versions/", versions.workflow_versions, name="workflow_versions"),
    path(
        "<int:workflow_id>/versions/<int:number>/publish/",
        versions.workflow_version_publish,
        name="workflow_version_publish",
    ),
    path(
        "<int:workflow_id>/versions/<int:number>/rollback/",
        versions.workflow_version_rollback,
        name="workflow_version_rollback",
    ),
    path("<int:workflow_id>/export/", export_import.workflow_export, name="workflow_export"),
    path(
        "<int:workflow_id>/import/",
        export_import.workflow_import_version,
        name="workflow_import_version",
    ),
]
