from django.urls import URLPattern, path

from evals import views

urlpatterns: list[URLPattern] = [
    path("", views.evals_index, name="evals"),
    path("datasets/", views.dataset_upload, name="evals_dataset_upload"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="evals_dataset"),
    path("suites/", views.suite_create, name="evals_suite_create"),
    path("start/", views.evaluation_start, name="evals_start"),
    path("gates/", views.gates, name="evals_gates"),
    path("compare/", views.compare, name="evals_compare"),
    path("<int:evaluation_id>/", views.evaluation_detail, name="evals_evaluation"),
]
