"""How an entry point finds who is acting: `page_access` for pages (the API's is
`tenants.api.base.api_access`). Both end in `Access`, which decides what the caller may do."""

from __future__ import annotations

from core.exceptions import NotFound, PermissionDenied
from tenants.http import AppRequest
from tenants.permissions import Access, Perm


def page_access(request: AppRequest, perm: Perm = Perm.WORKSPACE_VIEW) -> Access:
    """The caller's access to the page's workspace (set by `WorkspaceMiddleware`): 404 outside
    a workspace, 403 with the reason for a role that may not `perm`. A member sees that the
    page exists but not its content."""
    access = request.access
    if access is None:  # not a member: the workspace does not exist for them
        raise NotFound("Workspace not found.")
    if not access.can(perm):
        raise PermissionDenied(f"Your role ({access.role}) cannot do this.")
    return access
