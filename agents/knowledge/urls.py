"""Knowledge bases, under /w/<slug>/knowledge/."""

from django.urls import URLPattern, path

from agents.knowledge import views

urlpatterns: list[URLPattern] = [
    path("", views.knowledge_list, name="knowledge_list"),
    path("new/", views.knowledge_create, name="knowledge_create"),
    path("<int:knowledge_base_id>/", views.knowledge_detail, name="knowledge_detail"),
    path(
        "<int:knowledge_base_id>/documents/",
        views.knowledge_documents,
        name="knowledge_documents",
    ),
    path("<int:knowledge_base_id>/upload/", views.knowledge_upload, name="knowledge_upload"),
    path("<int:knowledge_base_id>/delete/", views.knowledge_delete, name="knowledge_delete"),
    path(
        "<int:knowledge_base_id>/documents/<int:document_id>/delete/",
        views.knowledge_document_delete,
        name="knowledge_document_delete",
    ),
    path(
        "<int:knowledge_base_id>/documents/<int:document_id>/retry/",
        views.knowledge_document_retry,
        name="knowledge_document_retry",
    ),
]
