"""Agent API: list/create/update agents and run them (202 + poll)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents import references, selectors, services
from agents.api import serializers as s
from agents.models import Agent
from agents.webhooks import webhook_secret_rotate
from core.pagination import PAGE_PARAMETERS, paginated, paginated_response
from tenants.api.base import WorkspaceAPIView
from tenants.api.views import WORKSPACE_PARAM


@extend_schema(parameters=[WORKSPACE_PARAM])
class AgentListApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="agents_list", responses=paginated(s.AgentOutput), parameters=PAGE_PARAMETERS
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            view=self,
            request=request,
            queryset=selectors.agents_list(access=self.access),
            serializer=s.AgentOutput,
        )

    @extend_schema(request=s.AgentCreateInput, responses={201: s.AgentOutput})
    def post(self, request: Request) -> Response:
        data = s.AgentCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        agent = services.agent_create(access=self.access, **data.validated_data)
        return Response(s.AgentOutput(agent).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[WORKSPACE_PARAM])
class AgentDetailApi(WorkspaceAPIView):
    def _output(self, agent: Agent) -> Response:
        uses = references.agent_uses([agent.pk], workspace_slug=self.access.workspace.slug)
        return Response(s.AgentDetailOutput(agent, context={"uses": uses}).data)

    @extend_schema(responses=s.AgentDetailOutput)
    def get(self, request: Request, pk: int) -> Response:
        return self._output(selectors.agent_get(access=self.access, agent_id=pk))

    @extend_schema(request=s.AgentUpdateInput, responses=s.AgentDetailOutput)
    def patch(self, request: Request, pk: int) -> Response:
        data = s.AgentUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        selectors.agent_get(access=self.access, agent_id=pk)
        agent = services.agent_update(access=self.access, agent_id=pk, **data.validated_data)
        return self._output(agent)


@extend_schema(parameters=[WORKSPACE_PARAM])
class AgentRunListApi(WorkspaceAPIView):
    counts_against_plan = True  # POST starts a run (402 when the plan's runs are used up)

    @extend_schema(request=s.RunInput, responses={202: s.RunOutput})
    def post(self, request: Request, pk: int) -> Response:
        data = s.RunInput(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.agent_run_start(access=self.access, agent_id=pk, **data.validated_data)
        location = reverse("api-agent-run", kwargs={"pk": pk, "run_id": run.pk})
        return Response(
            s.RunOutput(run).data, status=status.HTTP_202_ACCEPTED, headers={"Location": location}
        )


@extend_schema(parameters=[WORKSPACE_PARAM])
class AgentRunDetailApi(WorkspaceAPIView):
    @extend_schema(responses=s.RunOutput)
    def get(self, request: Request, pk: int, run_id: int) -> Response:
        run = selectors.agent_run_get(access=self.access, agent_id=pk, run_id=run_id)
        return Response(s.RunOutput(run).data)


@extend_schema(parameters=[WORKSPACE_PARAM])
class WebhookSecretApi(WorkspaceAPIView):
    @extend_schema(
        request=None,
        responses={201: inline_serializer("WebhookSecret", {"secret": serializers.CharField()})},
        description="Rotate the workspace's webhook signing secret. The new secret is shown "
        "once; deliveries are signed with it from now on.",
    )
    def post(self, request: Request) -> Response:
        secret = webhook_secret_rotate(access=self.access)
        return Response({"secret": secret}, status=status.HTTP_201_CREATED)
