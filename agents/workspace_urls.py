"""Workspace-level pages the agents app owns (usage, budget, providers, model aliases), at
the root of /w/<slug>/ (config/urls.py)."""

from django.urls import URLPattern, path

from agents import views

urlpatterns: list[URLPattern] = [
    path("usage/", views.usage, name="usage"),
    path("usage/budget/", views.usage_budget, name="usage_budget"),
    path("providers/", views.providers, name="providers"),
    path("models/", views.model_aliases, name="model_aliases"),
    path("models/new/", views.model_alias_edit, name="model_alias_create"),
    path("models/<int:alias_id>/", views.model_alias_edit, name="model_alias_edit"),
    path("models/<int:alias_id>/delete/", views.model_alias_delete, name="model_alias_delete"),
    path("providers/<int:credential_id>/delete/", views.provider_delete, name="provider_delete"),
    path("providers/<int:credential_id>/check/", views.provider_check, name="provider_check"),
]
