"""Writes for workspace sign-in. Each checks `Perm.SIGN_IN_MANAGE` (owners), owns its
transaction and records an audit event."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import crypto
from core.exceptions import Conflict, NotFound, ValidationFailed
from core.outbound_guard import check_public_url
from tenants import audit
from tenants.models import EmailDomain, Membership, Role, Workspace, WorkspaceSignIn
from tenants.permissions import Access, Perm
from tenants.sso import domains
from tenants.sso.selectors import sign_in_for

if TYPE_CHECKING:
    from accounts.models import User


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, fields={field: [message]})


def _sign_in_locked(workspace: Workspace) -> WorkspaceSignIn:
    sign_in, _ = WorkspaceSignIn.objects.select_for_update().get_or_create(workspace=workspace)
    return sign_in


@transaction.atomic
def sign_in_idp_update(
    *,
    access: Access,
    display_name: str,
    server_url: str,
    client_id: str,
    client_secret: str = "",
) -> WorkspaceSignIn:
    """Set the workspace's OpenID Connect IdP. An empty `client_secret` keeps the stored one.
    The server URL goes through the outbound guard (as every request to it will)."""
    access.require(Perm.SIGN_IN_MANAGE)
    server_url = server_url.strip()
    client_id = client_id.strip()
    if not server_url:
        raise _invalid("server_url", "Enter the issuer URL of your identity provider.")
    if not client_id:
        raise _invalid("client_id", "Enter the client ID your identity provider gave you.")
    check_public_url(server_url, field="server_url")
    sign_in = _sign_in_locked(access.workspace)
    if not client_secret and not sign_in.oidc_client_secret_encrypted:
        raise _invalid("client_secret", "Enter the client secret your identity provider gave you.")
    sign_in.display_name = display_name.strip() or "Single sign-on"
    sign_in.kind = "oidc"
    sign_in.oidc_server_url = server_url
    sign_in.oidc_client_id = client_id
    if client_secret:
        sign_in.oidc_client_secret_encrypted = crypto.encrypt(client_secret)
    sign_in.save()
    audit.record_for(
        access,
        action=audit.Action.SIGN_IN_IDP_UPDATED,
        target=sign_in,
        metadata={"kind": "oidc", "server_url": server_url, "secret_changed": bool(client_secret)},
    )
    return sign_in


def _signing_certificate(pem: str) -> str:
    """The IdP's signing certificate as PEM, checked: it parses and is valid today. A bare
    base64 body (as some IdPs show it) is accepted too."""
    text = pem.strip()
    if not text:
        raise _invalid("x509cert", "Paste your identity provider's signing certificate.")
    if "-----BEGIN CERTIFICATE-----" not in text:
        body = "".join(text.split())
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        text = "\n".join(["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----"])
    try:
        certificate = x509.load_pem_x509_certificate(text.encode())
    except ValueError as exc:
        raise _invalid(
            "x509cert", "This is not a PEM certificate (-----BEGIN CERTIFICATE----- …)."
        ) from exc
    now = timezone.now()
    if certificate.not_valid_after_utc <= now:
        raise _invalid(
            "x509cert",
            f"This certificate expired on {certificate.not_valid_after_utc:%Y-%m-%d}.",
        )
    if certificate.not_valid_before_utc > now:
        raise _invalid(
            "x509cert",
            f"This certificate is valid only from {certificate.not_valid_before_utc:%Y-%m-%d}.",
        )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@transaction.atomic
def sign_in_saml_update(
    *,
    access: Access,
    display_name: str,
    entity_id: str,
    sso_url: str,
    x509cert: str,
    email_attribute: str = "",
) -> WorkspaceSignIn:
    """Make the workspace's IdP a SAML 2.0 one (replacing an OpenID Connect one). Nothing is
    fetched from the IdP: the browser carries the request and the signed response, checked
    against `x509cert`. An empty `x509cert` keeps the stored certificate."""
    access.require(Perm.SIGN_IN_MANAGE)
    entity_id = entity_id.strip()
    sso_url = sso_url.strip()
    if not entity_id:
        raise _invalid("entity_id", "Enter your identity provider's entity ID (its issuer).")
    if urlsplit(sso_url).scheme not in {"https", "http"} or not urlsplit(sso_url).netloc:
        raise _invalid("sso_url", "Enter the identity provider's single sign-on URL (https://…).")
    sign_in = _sign_in_locked(access.workspace)
    if x509cert.strip():
        certificate = _signing_certificate(x509cert)
    elif sign_in.saml_x509cert:
        certificate = sign_in.saml_x509cert
    else:
        raise _invalid("x509cert", "Paste your identity provider's signing certificate.")
    sign_in.display_name = display_name.strip() or "Single sign-on"
    sign_in.kind = "saml"
    sign_in.saml_entity_id = entity_id
    sign_in.saml_sso_url = sso_url
    sign_in.saml_x509cert = certificate
    sign_in.saml_email_attribute = email_attribute.strip()
    sign_in.save()
    audit.record_for(
        access,
        action=audit.Action.SIGN_IN_IDP_UPDATED,
        target=sign_in,
        metadata={
            "kind": "saml",
            "entity_id": entity_id,
            "sso_url": sso_url,
            "certificate_changed": bool(x509cert.strip()),
        },
    )
    return sign_in


@transaction.atomic
def sign_in_idp_remove(*, access: Access) -> WorkspaceSignIn:
    """Forget the IdP; SSO can no longer be required."""
    access.require(Perm.SIGN_IN_MANAGE)
    sign_in = _sign_in_locked(access.workspace)
    sign_in.oidc_server_url = ""
    sign_in.oidc_client_id = ""
    sign_in.oidc_client_secret_encrypted = ""
    sign_in.kind = "oidc"
    sign_in.saml_entity_id = ""
    sign_in.saml_sso_url = ""
    sign_in.saml_x509cert = ""
    sign_in.saml_email_attribute = ""
    sign_in.sso_required = False
    sign_in.save()
    audit.record_for(access, action=audit.Action.SIGN_IN_IDP_REMOVED, target=sign_in)
    return sign_in


@transaction.atomic
def sign_in_policy_update(
    *, access: Access, sso_required: bool, mfa_required: bool
) -> WorkspaceSignIn:
    """What the workspace requires of its members' sessions. SSO can be required only with an
    IdP and at least one verified domain (else nobody could satisfy it)."""
    access.require(Perm.SIGN_IN_MANAGE)
    sign_in = _sign_in_locked(access.workspace)
    if sso_required:
        if not sign_in.configured:
            raise _invalid("sso_required", "Set up an identity provider first.")
        if not EmailDomain.objects.filter(
            workspace=access.workspace, verified_at__isnull=False
        ).exists():
            raise _invalid("sso_required", "Verify at least one email domain first.")
    sign_in.sso_required = sso_required
    sign_in.mfa_required = mfa_required
    sign_in.save(update_fields=["sso_required", "mfa_required", "updated_at"])
    audit.record_for(
        access,
        action=audit.Action.SIGN_IN_POLICY_UPDATED,
        target=sign_in,
        metadata={"sso_required": sso_required, "mfa_required": mfa_required},
    )
    return sign_in


def email_domain_claim(*, access: Access, domain: str) -> EmailDomain:
    """Claim `domain` for the workspace; it is verified later by its DNS TXT record."""
    access.require(Perm.SIGN_IN_MANAGE)
    domain = domain.strip().lower().rstrip(".")
    if domain.startswith("@"):
        domain = domain[1:]
    if not domains.DOMAIN_RE.match(domain) or len(domain) > 253:
        raise _invalid("domain", f"'{domain}' is not a domain name (such as example.com).")
    try:
        with transaction.atomic():
            claim = EmailDomain.objects.create(
                workspace=access.workspace,
                domain=domain,
                token=secrets.token_urlsafe(24),
                created_by_id=access.actor_id,
            )
            audit.record_for(
                access, action=audit.Action.DOMAIN_CLAIMED, target=claim, target_label=domain
            )
    except IntegrityError as exc:
        raise _invalid("domain", f"{domain} is already claimed by this workspace.") from exc
    return claim


def _claim(access: Access, domain_id: int) -> EmailDomain:
    claim = EmailDomain.objects.filter(workspace=access.workspace, pk=domain_id).first()
    if claim is None:
        raise NotFound("Domain not found.")
    return claim


def email_domain_verify(*, access: Access, domain_id: int) -> EmailDomain:
    """Look up the claim's TXT record now. Verified when it carries the claim's token;
    otherwise the reason is kept on the claim (`last_error`) and raised."""
    access.require(Perm.SIGN_IN_MANAGE)
    claim = _claim(access, domain_id)
    if claim.is_verified:
        return claim
    error = ""
    try:
        published = domains.token_published(claim.domain, claim.token)
    except domains.DnsUnavailable:
        published = False
        error = "No DNS server answered; try again in a few minutes."
    if not published and not error:
        error = (
            f"No TXT record at {domains.record_name(claim.domain)} holds this claim's value yet "
            "(DNS changes can take a while to appear)."
        )
    claim.last_checked_at = timezone.now()
    claim.last_error = error
    if published:
        if (
            EmailDomain.objects.filter(domain=claim.domain, verified_at__isnull=False)
            .exclude(pk=claim.pk)
            .exists()
        ):
            raise Conflict(f"{claim.domain} is verified by another workspace.")
        claim.verified_at = claim.last_checked_at
    try:
        with transaction.atomic():
            claim.save(update_fields=["last_checked_at", "last_error", "verified_at", "updated_at"])
            if published:
                audit.record_for(
                    access,
                    action=audit.Action.DOMAIN_VERIFIED,
                    target=claim,
                    target_label=claim.domain,
                )
    except IntegrityError as exc:  # another workspace verified it a moment ago
        raise Conflict(f"{claim.domain} is verified by another workspace.") from exc
    if error:
        raise ValidationFailed(error)
    return claim


@transaction.atomic
def email_domain_remove(*, access: Access, domain_id: int) -> None:
    """Give up a claim. Removing the last verified domain turns the SSO requirement off."""
    access.require(Perm.SIGN_IN_MANAGE)
    claim = _claim(access, domain_id)
    domain = claim.domain
    claim.delete()
    sign_in = sign_in_for(workspace=access.workspace)
    if (
        sign_in is not None
        and sign_in.sso_required
        and not EmailDomain.objects.filter(
            workspace=access.workspace, verified_at__isnull=False
        ).exists()
    ):
        sign_in.sso_required = False
        sign_in.save(update_fields=["sso_required", "updated_at"])
    audit.record_for(access, action=audit.Action.DOMAIN_REMOVED, target_label=domain)


def sso_member_join(*, workspace: Workspace, user: User) -> Membership:
    """A person who signed in through the workspace's IdP with an address in one of its
    verified domains joins it as a member (docs/decisions.md 105); a member keeps their role."""
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(
            user=user, workspace=workspace, defaults={"role": Role.MEMBER}
        )
        if created:
            audit.record(
                action=audit.Action.MEMBER_JOINED_BY_SSO,
                actor=user,
                workspace=workspace,
                target=membership,
                target_label=user.email,
            )
    return membership
