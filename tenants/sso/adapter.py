"""allauth's social-account adapter: each workspace's IdP is an allauth OpenID Connect app.

Apps are built in memory from `WorkspaceSignIn` rows (the secret decrypted only here), one per
workspace, with provider id `workspace-<id>`; no SocialApp row, no app from settings. An app is
found only by its provider id, so no page lists every workspace's IdP.

Isolation: a workspace's IdP may speak only for addresses in that workspace's verified domains.
Anything else it asserts is refused before any account is touched. For a verified domain the
IdP is trusted: its address is marked verified, an existing account with it is connected, and
the person joins the workspace as a member (docs/decisions.md 105)."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialApp, SocialLogin
from django.conf import settings
from django.http import HttpRequest
from django.shortcuts import render
from django.urls import reverse

from accounts.models import User
from core import crypto
from core.outbound_guard import guarded_requests_session
from tenants.models import WorkspaceSignIn
from tenants.sso.selectors import (
    PROVIDER_PREFIX,
    domain_verified_for,
    sign_in_by_provider_id,
)
from tenants.sso.services import sso_member_join

OIDC = "openid_connect"


def app_for(sign_in: WorkspaceSignIn) -> SocialApp:
    return SocialApp(
        provider=OIDC,
        provider_id=sign_in.provider_id,
        name=sign_in.display_name,
        client_id=sign_in.oidc_client_id,
        secret=crypto.decrypt(sign_in.oidc_client_secret_encrypted),
        settings={"server_url": sign_in.oidc_server_url},
    )


def _refuse(request: HttpRequest, message: str, status: int = 403) -> ImmediateHttpResponse:
    return ImmediateHttpResponse(
        render(request, "tenants/sso/refused.html", {"message": message}, status=status)
    )


class WorkspaceSocialAdapter(DefaultSocialAccountAdapter):  # type: ignore[misc]
    def list_apps(
        self, request: HttpRequest | None, provider: str | None = None, client_id: str | None = None
    ) -> list[SocialApp]:
        if not provider or not provider.startswith(PROVIDER_PREFIX):
            return []
        sign_in = sign_in_by_provider_id(provider)
        if sign_in is None or (client_id and sign_in.oidc_client_id != client_id):
            return []
        return [app_for(sign_in)]

    def get_requests_session(self) -> Any:
        # Every request to an IdP (discovery, token, keys, userinfo) goes through the guard.
        return guarded_requests_session(timeout=float(settings.SOCIALACCOUNT_REQUESTS_TIMEOUT))

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        sign_in = sign_in_by_provider_id(sociallogin.account.provider)
        if sign_in is None:
            raise _refuse(request, "This workspace no longer signs in with SSO.", status=404)
        workspace = sign_in.workspace
        email = _asserted_email(sociallogin)
        if not email or not domain_verified_for(workspace=workspace, email=email):
            raise _refuse(
                request,
                f"{workspace.name}'s identity provider signed you in as "
                f"{email or 'someone without an email address'}, which is not in an email "
                f"domain {workspace.name} has verified, so it cannot sign you in here.",
            )
        for address in sociallogin.email_addresses:
            if address.email.lower() == email:
                address.verified = True
                address.primary = True
        if sociallogin.user is not None:
            sociallogin.user.email = email
        if not sociallogin.is_existing:
            existing = User.objects.filter(email__iexact=email).first()
            if existing is not None:
                sociallogin.connect(request, existing)
        if sociallogin.is_existing:
            user = sociallogin.user
            assert isinstance(user, User)  # noqa: S101 (narrowing for mypy)
            EmailAddress.objects.update_or_create(
                user=user, email__iexact=email, defaults={"email": email, "verified": True}
            )
            sso_member_join(workspace=workspace, user=user)
        sociallogin.state["next"] = reverse(
            "workspace_dashboard", kwargs={"workspace_slug": workspace.slug}
        )

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form: Any = None) -> User:
        user: User = super().save_user(request, sociallogin, form)
        sign_in = sign_in_by_provider_id(sociallogin.account.provider)
        if sign_in is not None:
            sso_member_join(workspace=sign_in.workspace, user=user)
        return user

    def populate_user(
        self, request: HttpRequest, sociallogin: SocialLogin, data: dict[str, Any]
    ) -> Any:
        user = super().populate_user(request, sociallogin, data)
        name = data.get("name") or " ".join(
            part for part in (data.get("first_name"), data.get("last_name")) if part
        )
        if name:
            user.full_name = str(name)[:150]
        return user


def _asserted_email(sociallogin: SocialLogin) -> str:
    user = sociallogin.user
    email = (getattr(user, "email", "") or "").strip().lower()
    if not email and sociallogin.email_addresses:
        email = sociallogin.email_addresses[0].email.strip().lower()
    return email
