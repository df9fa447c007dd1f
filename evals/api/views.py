"""Evaluations API: datasets, suites, evaluations (start 202 + poll) and their results."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from core.pagination import PAGE_PARAMETERS, paginated, paginated_response
from evals import selectors, services
from evals.api import serializers as s
from tenants.api.base import WorkspaceAPIView
from tenants.api.views import WORKSPACE_PARAM


@extend_schema(parameters=[WORKSPACE_PARAM])
class DatasetListApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="evals_datasets_list",
        responses=paginated(s.DatasetOutput),
        parameters=PAGE_PARAMETERS,
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            view=self,
            request=request,
            queryset=selectors.datasets_list(access=self.access),
            serializer=s.DatasetOutput,
        )

    @extend_schema(
        operation_id="evals_datasets_upload",
        request=s.DatasetInput,
        responses={201: s.DatasetOutput},
    )
    def post(self, request: Request) -> Response:
        data = s.DatasetInput(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = services.dataset_import(
            access=self.access,
            name=data.validated_data["name"],
            filename=data.validated_data["filename"],
            data=data.validated_data["content"].encode(),
        )
        dataset = selectors.dataset_get(access=self.access, dataset_id=dataset.pk)
        return Response(s.DatasetOutput(dataset).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[WORKSPACE_PARAM])
class DatasetDetailApi(WorkspaceAPIView):
    @extend_schema(responses=s.DatasetDetailOutput)
    def get(self, request: Request, pk: int) -> Response:
        dataset = selectors.dataset_get(access=self.access, dataset_id=pk)
        return Response(s.DatasetDetailOutput(dataset).data)


@extend_schema(parameters=[WORKSPACE_PARAM])
class SuiteListApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="evals_suites_list",
        responses=paginated(s.SuiteOutput),
        parameters=PAGE_PARAMETERS,
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            view=self,
            request=request,
            queryset=selectors.suites_list(access=self.access),
            serializer=s.SuiteOutput,
        )

    @extend_schema(
        operation_id="evals_suites_create", request=s.SuiteInput, responses={201: s.SuiteOutput}
    )
    def post(self, request: Request) -> Response:
        data = s.SuiteInput(data=request.data)
        data.is_valid(raise_exception=True)
        suite = services.suite_create(
            access=self.access,
            name=data.validated_data["name"],
            dataset_id=data.validated_data["dataset"],
            evaluators_spec=data.validated_data["evaluators"],
            pass_threshold=data.validated_data["pass_threshold"],
        )
        return Response(s.SuiteOutput(suite).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[WORKSPACE_PARAM])
class EvaluationListApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="evals_evaluations_list",
        responses=paginated(s.EvaluationOutput),
        parameters=PAGE_PARAMETERS,
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            view=self,
            request=request,
            queryset=selectors.evaluations_list(access=self.access),
            serializer=s.EvaluationOutput,
        )

    @extend_schema(
        operation_id="evals_evaluations_start",
        request=s.EvaluationInput,
        responses={202: s.EvaluationOutput},
    )
    def post(self, request: Request) -> Response:
        data = s.EvaluationInput(data=request.data)
        data.is_valid(raise_exception=True)
        evaluation = services.evaluation_start(
            access=self.access,
            suite_id=data.validated_data["suite"],
            agent_id=data.validated_data.get("agent"),
            workflow_id=data.validated_data.get("workflow"),
            version_number=data.validated_data.get("version"),
        )
        location = reverse("api-evals-evaluation", kwargs={"pk": evaluation.pk})
        return Response(
            s.EvaluationOutput(evaluation).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": location},
        )


@extend_schema(parameters=[WORKSPACE_PARAM])
class EvaluationDetailApi(WorkspaceAPIView):
    @extend_schema(responses=s.EvaluationOutput)
    def get(self, request: Request, pk: int) -> Response:
        evaluation = selectors.evaluation_get(access=self.access, evaluation_id=pk)
        return Response(s.EvaluationOutput(evaluation).data)


@extend_schema(parameters=[WORKSPACE_PARAM])
class EvaluationResultsApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="evals_evaluation_results",
        responses=paginated(s.CaseResultOutput),
        parameters=PAGE_PARAMETERS,
    )
    def get(self, request: Request, pk: int) -> Response:
        evaluation = selectors.evaluation_get(access=self.access, evaluation_id=pk)
        return paginated_response(
            view=self,
            request=request,
            queryset=selectors.evaluation_results(evaluation=evaluation),
            serializer=s.CaseResultOutput,
        )
