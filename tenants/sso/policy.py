"""What a workspace requires of a browser session before its pages, websockets and
session-authenticated API calls answer (API keys are not sessions and are unaffected):

- SSO: a member whose email is in one of the workspace's verified domains must have signed in
  through the workspace's IdP in this session (allauth's authentication records say how);
- two-factor: a member must have TOTP on (allauth asks for it at every sign-in once it is on).

`session_refusal` is asked by `WorkspaceMiddleware`, `api_access` and the websocket scope
middleware (tenants/channels.py); it costs no query for a workspace without requirements (the
sign-in row comes joined with the membership)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from allauth.account.authentication import get_authentication_records
from allauth.mfa.models import Authenticator
from allauth.mfa.utils import is_mfa_enabled

from tenants.models import WorkspaceSignIn
from tenants.permissions import Access
from tenants.sso.selectors import domain_verified_for, sign_in_for

# Where a person sent to set up two-factor came from (the recovery-codes page links back).
MFA_SETUP_NEXT = "mfa_setup_next"


class Requirement(StrEnum):
    SSO = "sso"
    MFA = "mfa"


@dataclass(frozen=True)
class SessionRefusal:
    requirement: Requirement
    sign_in: WorkspaceSignIn


def signed_in_through(request: Any, user: Any, provider_id: str) -> bool:
    """Whether this session's sign-in of `user` went through the IdP allauth calls
    `provider_id`."""
    return any(
        record.get("method") == "socialaccount" and record.get("provider") == provider_id
        for record in get_authentication_records(request, user)
    )


def has_two_factor(user: Any) -> bool:
    return bool(is_mfa_enabled(user, [Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]))


def session_refusal(*, request: Any, access: Access) -> SessionRefusal | None:
    """Why this session may not open `access`'s workspace yet, or None."""
    user = access.user
    if user is None or access.api_key is not None:
        return None
    sign_in = sign_in_for(workspace=access.workspace)
    if sign_in is None or not (sign_in.sso_required or sign_in.mfa_required):
        return None
    if (
        sign_in.sso_required
        and sign_in.configured
        and not signed_in_through(request, user, sign_in.provider_id)
        and domain_verified_for(workspace=access.workspace, email=user.email)
    ):
        return SessionRefusal(Requirement.SSO, sign_in)
    if sign_in.mfa_required and not has_two_factor(user):
        return SessionRefusal(Requirement.MFA, sign_in)
    return None
