from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode

from core.exceptions import NotFound
from tenants.http import AppRequest
from tenants.schemas import activate, activate_public
from tenants.selectors import WorkspacePendingDeletion, access_for_user
from tenants.sso.policy import MFA_SETUP_NEXT, Requirement, session_refusal


class WorkspaceMiddleware:
    """Path-based tenancy: `/w/<slug>/...` runs in that workspace's schema, for its members only.

    Every request starts in the public schema. Workspace URLs carry a `workspace_slug` kwarg;
    before the view runs, the caller's membership is checked (a non-member gets a 404, the same
    as for a workspace that does not exist), the schema is switched and `request.access` set.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: AppRequest) -> HttpResponse:
        activate_public()
        request.workspace = None
        request.access = None
        return self.get_response(request)

    def process_view(
        self,
        request: AppRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        slug = view_kwargs.pop("workspace_slug", None)
        if slug is None:
            return None
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        try:
            access = access_for_user(user=request.user, slug=slug)
        except WorkspacePendingDeletion as exc:
            # A clear page instead of the workspace: what happened, until when it can be
            # restored, and (for an owner) the way back (privacy's restore page).
            context = {"pending": exc.workspace, "role": exc.role}
            return render(request, "tenants/workspace_pending_deletion.html", context, status=410)
        except NotFound as exc:
            # Raised before the view runs, where ApplicationErrorMiddleware (which sees only what
            # views raise) cannot map it: Django's own 404 handling answers this one.
            raise Http404(exc.message) from exc
        refusal = session_refusal(request=request, access=access)
        if refusal is not None and refusal.requirement == Requirement.SSO:
            return render(
                request,
                "tenants/sso/required.html",
                {"workspace": access.workspace, "sign_in": refusal.sign_in},
                status=403,
            )
        if refusal is not None:  # two-factor: set it up, then come back here
            request.session[MFA_SETUP_NEXT] = request.get_full_path()
            setup = reverse("mfa_activate_totp")
            return HttpResponseRedirect(f"{setup}?{urlencode({'next': request.get_full_path()})}")
        request.workspace = access.workspace
        request.access = access
        if request.session.get("last_workspace") != access.workspace.slug:
            request.session["last_workspace"] = access.workspace.slug
        activate(access.workspace)
        return None
