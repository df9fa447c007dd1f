"""Workspace API. Each view: input serializer → one service/selector → output serializer."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.requests import signed_in_user
from core.exceptions import PermissionDenied
from core.pagination import PAGE_PARAMETERS, paginated, paginated_response
from tenants import selectors, services
from tenants.api import serializers as s
from tenants.api.base import WORKSPACE_HEADER, WorkspaceAPIView
from tenants.models import ApiKey
from tenants.permissions import Perm

WORKSPACE_PARAM = OpenApiParameter(
    WORKSPACE_HEADER,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Workspace slug; required with session authentication, ignored with an API key.",
)


class WorkspaceListApi(APIView):
    @extend_schema(
        operation_id="workspaces_list",
        responses=paginated(s.MembershipWorkspaceOutput),
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("q", str, description="Only workspaces whose name or slug has it."),
        ],
    )
    def get(self, request: Request) -> Response:
        if isinstance(request.auth, ApiKey):
            memberships: Any = [_KeyMembership(request.auth.workspace)]
        else:
            memberships = selectors.workspaces_for_user(
                user=signed_in_user(request), query=request.query_params.get("q", "")[:100]
            )
        return paginated_response(
            view=self, request=request, queryset=memberships, serializer=s.MembershipWorkspaceOutput
        )

    @extend_schema(request=s.WorkspaceCreateInput, responses={201: s.WorkspaceOutput})
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, ApiKey):
            raise PermissionDenied("API keys cannot create workspaces; sign in instead.")
        data = s.WorkspaceCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        workspace = services.workspace_create(user=signed_in_user(request), **data.validated_data)
        return Response(s.WorkspaceOutput(workspace).data, status=status.HTTP_201_CREATED)


class _KeyMembership:
    """An API key's view of its workspace, shaped like a membership (it has no role)."""

    def __init__(self, workspace: Any) -> None:
        self.workspace = workspace
        self.role = "api_key"


@extend_schema(parameters=[WORKSPACE_PARAM])
class WorkspaceDetailApi(WorkspaceAPIView):
    @extend_schema(responses=s.WorkspaceOutput)
    def get(self, request: Request) -> Response:
        self.access.require(Perm.WORKSPACE_VIEW)
        return Response(s.WorkspaceOutput(self.access.workspace).data)

    @extend_schema(request=s.WorkspaceUpdateInput, responses=s.WorkspaceOutput)
    def patch(self, request: Request) -> Response:
        data = s.WorkspaceUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        workspace = services.workspace_update(access=self.access, **data.validated_data)
        return Response(s.WorkspaceOutput(workspace).data)


@extend_schema(parameters=[WORKSPACE_PARAM])
class MemberListApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="members_list", responses=paginated(s.MemberOutput), parameters=PAGE_PARAMETERS
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            view=self,
            request=request,
            queryset=selectors.members_list(access=self.access),
            serializer=s.MemberOutput,
        )


@extend_schema(parameters=[WORKSPACE_PARAM])
class MemberDetailApi(WorkspaceAPIView):
    @extend_schema(responses=s.MemberOutput)
    def get(self, request: Request, pk: int) -> Response:
        return Response(
            s.MemberOutput(selectors.member_get(access=self.access, membership_id=pk)).data
        )

    @extend_schema(request=s.MemberUpdateInput, responses=s.MemberOutput)
    def patch(self, request: Request, pk: int) -> Response:
        data = s.MemberUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_change_role(
            access=self.access,
            membership_id=pk,
            role=data.validated_data["role"],
        )
        return Response(s.MemberOutput(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.membership_remove(access=self.access, membership_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(parameters=[WORKSPACE_PARAM])
class InvitationListApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="invitations_list",
        responses=paginated(s.InvitationOutput),
        parameters=PAGE_PARAMETERS,
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            view=self,
            request=request,
            queryset=selectors.invitations_pending(access=self.access),
            serializer=s.InvitationOutput,
        )

    @extend_schema(request=s.InvitationInput, responses={201: s.InvitationOutput})
    def post(self, request: Request) -> Response:
        data = s.InvitationInput(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, _token = services.invitation_create(access=self.access, **data.validated_data)
        return Response(s.InvitationOutput(invitation).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[WORKSPACE_PARAM])
class InvitationDetailApi(WorkspaceAPIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.invitation_revoke(access=self.access, invitation_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(parameters=[WORKSPACE_PARAM])
class ApiKeyListApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="api_keys_list",
        responses=paginated(s.ApiKeyOutput),
        parameters=PAGE_PARAMETERS,
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            view=self,
            request=request,
            queryset=selectors.api_keys_list(access=self.access),
            serializer=s.ApiKeyOutput,
        )

    @extend_schema(request=s.ApiKeyInput, responses={201: s.ApiKeyCreatedOutput})
    def post(self, request: Request) -> Response:
        data = s.ApiKeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        key, secret = services.api_key_create(access=self.access, **data.validated_data)
        key.key = secret  # type: ignore[attr-defined]
        return Response(s.ApiKeyCreatedOutput(key).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[WORKSPACE_PARAM])
class ApiKeyDetailApi(WorkspaceAPIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.api_key_revoke(access=self.access, key_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(
    parameters=[WORKSPACE_PARAM, OpenApiParameter("action", str, description="Only this action")]
)
class AuditEventListApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="audit_events_list",
        responses=paginated(s.AuditEventOutput),
        parameters=PAGE_PARAMETERS,
    )
    def get(self, request: Request) -> Response:
        events = selectors.audit_events(
            access=self.access, action=request.query_params.get("action", "")
        )
        return paginated_response(
            view=self, request=request, queryset=events, serializer=s.AuditEventOutput
        )
