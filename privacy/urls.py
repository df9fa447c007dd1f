from django.urls import URLPattern, path

from privacy import views

# The signed-in person's own data: /privacy/...
urlpatterns: list[URLPattern] = [
    path("", views.account_privacy, name="account_privacy"),
    path("export/", views.account_export, name="account_export"),
    path("delete/", views.account_delete, name="account_delete"),
    path("exports/<int:export_id>/", views.export_status, name="export_status"),
    path("exports/<int:export_id>/download/", views.export_download, name="export_download"),
    path("workspaces/<slug:slug>/restore/", views.workspace_restore, name="workspace_restore"),
]
