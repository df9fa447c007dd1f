"""Roles, what each may do, and the one place that decides it.

Every view, API view and service asks `Access.require(Perm.X)`; nothing else compares roles.
Object-level grants (django-guardian) extend this later through `Access.can(perm, obj=...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from core.exceptions import PermissionDenied
from tenants.models import Role

if TYPE_CHECKING:
    from accounts.models import User
    from tenants.models import ApiKey, Workspace


class Perm(StrEnum):
    WORKSPACE_VIEW = "workspace.view"
    WORKSPACE_UPDATE = "workspace.update"
    WORKSPACE_DELETE = "workspace.delete"
    SIGN_IN_MANAGE = "sign_in.manage"  # the workspace's IdP, email domains, SSO and 2FA rules
    MEMBERS_VIEW = "members.view"
    MEMBERS_INVITE = "members.invite"
    MEMBERS_MANAGE = "members.manage"
    API_KEYS_MANAGE = "api_keys.manage"
    AUDIT_VIEW = "audit.view"
    BILLING_VIEW = "billing.view"
    BILLING_MANAGE = "billing.manage"
    BUILD = "build"
    RUN = "run"


_VIEWER = frozenset({Perm.WORKSPACE_VIEW, Perm.MEMBERS_VIEW})
_MEMBER = _VIEWER | {Perm.BUILD, Perm.RUN}
_ADMIN = _MEMBER | {
    Perm.WORKSPACE_UPDATE,
    Perm.MEMBERS_INVITE,
    Perm.MEMBERS_MANAGE,
    Perm.API_KEYS_MANAGE,
    Perm.AUDIT_VIEW,
    Perm.BILLING_VIEW,
    Perm.BILLING_MANAGE,
}
_OWNER = _ADMIN | {Perm.WORKSPACE_DELETE, Perm.SIGN_IN_MANAGE}

ROLE_PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.OWNER: _OWNER,
    Role.ADMIN: _ADMIN,
    Role.MEMBER: _MEMBER,
    Role.VIEWER: _VIEWER,
}

# What an API key may be granted. Keys never manage keys, change the plan or delete workspaces.
API_KEY_SCOPES: dict[str, str] = {
    Perm.WORKSPACE_VIEW: "Read workspace details",
    Perm.MEMBERS_VIEW: "List members",
    Perm.MEMBERS_INVITE: "Invite members",
    Perm.MEMBERS_MANAGE: "Change roles and remove members",
    Perm.AUDIT_VIEW: "Read the audit log",
    Perm.BILLING_VIEW: "Read the plan, usage and invoices",
    Perm.BUILD: "Create and edit agents and workflows",
    Perm.RUN: "Run agents and workflows",
}


def role_can(role: str, perm: Perm) -> bool:
    return perm in ROLE_PERMISSIONS.get(Role(role), frozenset())


def assignable_roles(actor_role: str) -> list[Role]:
    """Owners may grant any role; admins any role but owner; others none."""
    if actor_role == Role.OWNER:
        return list(Role)
    if actor_role == Role.ADMIN:
        return [Role.ADMIN, Role.MEMBER, Role.VIEWER]
    return []


@dataclass(frozen=True)
class Access:
    """Who is acting in a workspace: a member (by role) or an API key (by scopes)."""

    workspace: Workspace
    user: User | None = None
    role: str | None = None
    api_key: ApiKey | None = None

    def can(self, perm: Perm, obj: Any = None) -> bool:
        if self.api_key is not None:
            return perm.value in self.api_key.scopes
        if self.role is not None and role_can(self.role, perm):
            return True
        if obj is not None and self.user is not None:
            # Object-level grants (django-guardian) widen, never narrow, what a role allows.
            return bool(self.user.has_perm(perm.value, obj))
        return False

    def require(self, perm: Perm, obj: Any = None) -> None:
        if not self.can(perm, obj):
            raise PermissionDenied(f"Your access to this workspace does not allow '{perm.value}'.")

    @property
    def actor_id(self) -> int | None:
        """The acting user's id, for `created_by`-style columns; None for an API key."""
        return self.user.pk if self.user is not None else None

    @property
    def label(self) -> str:
        if self.api_key is not None:
            return f"API key {self.api_key.prefix}"
        return self.user.email if self.user is not None else "anonymous"
