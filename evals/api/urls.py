from django.urls import path

from evals.api import views

urlpatterns = [
    path("evals/datasets/", views.DatasetListApi.as_view(), name="api-evals-datasets"),
    path("evals/datasets/<int:pk>/", views.DatasetDetailApi.as_view(), name="api-evals-dataset"),
    path("evals/suites/", views.SuiteListApi.as_view(), name="api-evals-suites"),
    path("evals/evaluations/", views.EvaluationListApi.as_view(), name="api-evals-evaluations"),
    path(
        "evals/evaluations/<int:pk>/",
        views.EvaluationDetailApi.as_view(),
        name="api-evals-evaluation",
    ),
    path(
        "evals/evaluations/<int:pk>/results/",
        views.EvaluationResultsApi.as_view(),
        name="api-evals-evaluation-results",
    ),
]
