from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.requests import signed_in_user
from core.exceptions import PermissionDenied, ValidationFailed
from tenants.models import ApiKey
from tenants.permissions import Access
from tenants.schemas import activate, activate_public
from tenants.selectors import access_for_api_key, access_for_user
from tenants.sso.policy import Requirement, session_refusal

WORKSPACE_HEADER = "X-Workspace"


def api_access(request: Request) -> Access:
    """The workspace a call acts in: the API key's own, or for a browser session the one named
    by the `X-Workspace` header. Switches the connection to that workspace's schema."""
    if isinstance(request.auth, ApiKey):
        access = access_for_api_key(api_key=request.auth)
    else:
        slug = request.headers.get(WORKSPACE_HEADER, "").strip()
        if not slug:
            raise ValidationFailed(
                f"Name the workspace with the {WORKSPACE_HEADER} header (its slug).",
                fields={WORKSPACE_HEADER: ["This header is required with session authentication."]},
            )
        access = access_for_user(user=signed_in_user(request), slug=slug)
        refusal = session_refusal(request=request, access=access)
        if refusal is not None:
            raise PermissionDenied(
                f"{access.workspace.name} requires signing in through its single sign-on."
                if refusal.requirement == Requirement.SSO
                else f"{access.workspace.name} requires two-factor authentication: turn it on "
                "in your account settings (API keys are not affected)."
            )
    activate(access.workspace)
    return access


class WorkspaceAPIView(APIView):
    """Base for endpoints that act inside one workspace; `self.access` is set before the
    handler runs. An outsider gets 404: a workspace they cannot see does not exist for them."""

    access: Access

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.access = api_access(request)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        activate_public()
        return super().finalize_response(request, response, *args, **kwargs)
