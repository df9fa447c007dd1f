"""allauth's social-account adapter: each workspace's IdP is an allauth OpenID Connect or SAML
app (docs/decisions.md 104, 113).

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
SAML = "saml"

# Where allauth's SAML provider looks for the email when the owner names no attribute.
SAML_EMAIL_ATTRIBUTES = [
    "urn:oid:0.9.2342.19200300.100.1.3",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "email",
    "mail",
]


def app_for(sign_in: WorkspaceSignIn) -> SocialApp:
    if sign_in.kind == SAML:
        return saml_app_for(sign_in)
    return SocialApp(
        provider=OIDC,
        provider_id=sign_in.provider_id,
        name=sign_in.display_name,
        client_id=sign_in.oidc_client_id,
        secret=crypto.decrypt(sign_in.oidc_client_secret_encrypted),
        settings={"server_url": sign_in.oidc_server_url},
    )


def saml_app_for(sign_in: WorkspaceSignIn) -> SocialApp:
    """allauth's SAML app: its "organization slug" (client id) is the provider id too, so the
    ACS and metadata URLs are `/accounts/saml/workspace-<id>/…`. The assertion must be signed
    by the stored certificate; responses the SP did not ask for (IdP-initiated) are refused;
    SHA-1 signatures are refused (allauth's default, kept explicit)."""
    email_attributes = list(SAML_EMAIL_ATTRIBUTES)
    if sign_in.saml_email_attribute:
        email_attributes.insert(0, sign_in.saml_email_attribute)
    return SocialApp(
        provider=SAML,
        provider_id=sign_in.provider_id,
        name=sign_in.display_name,
        client_id=sign_in.provider_id,
        settings={
            "idp": {
                "entity_id": sign_in.saml_entity_id,
                "sso_url": sign_in.saml_sso_url,
                "x509cert": sign_in.saml_x509cert,
            },
            "attribute_mapping": {
                "uid": ["urn:oasis:names:tc:SAML:attribute:subject-id"],
                "email": email_attributes,
                "first_name": [
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
                    "urn:oid:2.5.4.42",
                ],
                "last_name": [
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
                    "urn:oid:2.5.4.4",
                ],
            },
            "advanced": {
                "strict": True,
                "want_assertion_signed": True,
                "want_attribute_statement": False,
                "reject_idp_initiated_sso": True,
                "reject_deprecated_algorithm": True,
                # Our own host may be `localhost` in development; the server never fetches
                # the IdP's URL (the browser goes there), so a LAN name is harmless too.
                "allow_single_label_domains": True,
            },
        },
    )


def _refuse(request: HttpRequest, message: str, status: int = 403) -> ImmediateHttpResponse:
    return ImmediateHttpResponse(
        render(request, "tenants/sso/refused.html", {"message": message}, status=status)
    )


class WorkspaceSocialAdapter(DefaultSocialAccountAdapter):  # type: ignore[misc]
    def list_apps(
        self, request: HttpRequest | None, provider: str | None = None, client_id: str | None = None
    ) -> list[SocialApp]:
        if provider == SAML:
            # allauth's SAML views look an app up by its organization slug (our provider id).
            sign_in = sign_in_by_provider_id(client_id or "")
            if sign_in is None or sign_in.kind != SAML:
                return []
            return [saml_app_for(sign_in)]
        if not provider or not provider.startswith(PROVIDER_PREFIX):
            return []
        sign_in = sign_in_by_provider_id(provider)
        if sign_in is None:
            return []
        app = app_for(sign_in)
        if client_id and app.client_id != client_id:
            return []
        return [app]

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
