from django.urls import URLPattern, path

from privacy import views

# /w/<slug>/settings/data/...: the workspace's Export / delete section (owners only).
urlpatterns: list[URLPattern] = [
    path("", views.workspace_data, name="workspace_data"),
    path("export/", views.workspace_export, name="workspace_export"),
    path("delete/", views.workspace_delete, name="workspace_delete"),
]
