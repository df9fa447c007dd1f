"""Reads for workspace sign-in."""

from __future__ import annotations

from cryptography import x509
from django.db.models import QuerySet

from tenants.models import EmailDomain, Workspace, WorkspaceSignIn

PROVIDER_PREFIX = "workspace-"


def email_domain_of(email: str) -> str:
    return email.rpartition("@")[2].strip().lower()


def sign_in_for(*, workspace: Workspace) -> WorkspaceSignIn | None:
    """The workspace's sign-in settings (None when never set). Uses the row `access_for_user`
    already joined when there is one."""
    try:
        sign_in: WorkspaceSignIn = workspace.sign_in
    except WorkspaceSignIn.DoesNotExist:
        return None
    return sign_in


def sign_in_by_provider_id(provider_id: str) -> WorkspaceSignIn | None:
    """The sign-in whose IdP allauth calls `provider_id` (`workspace-<id>`, whether it speaks
    OpenID Connect or SAML), if configured."""
    if not provider_id.startswith(PROVIDER_PREFIX):
        return None
    workspace_id = provider_id.removeprefix(PROVIDER_PREFIX)
    if not workspace_id.isdigit():
        return None
    sign_in = (
        WorkspaceSignIn.objects.select_related("workspace")
        .filter(workspace_id=int(workspace_id), workspace__is_template=False)
        .first()
    )
    return sign_in if sign_in is not None and sign_in.configured else None


def email_domains_for(*, workspace: Workspace) -> QuerySet[EmailDomain]:
    return EmailDomain.objects.filter(workspace=workspace).order_by("domain")


def domain_verified_for(*, workspace: Workspace, email: str) -> bool:
    """Whether `email`'s domain is one `workspace` verified."""
    return EmailDomain.objects.filter(
        workspace=workspace, domain=email_domain_of(email), verified_at__isnull=False
    ).exists()


def sso_sign_in_for_email(*, email: str) -> WorkspaceSignIn | None:
    """The workspace whose IdP speaks for `email`: the one that verified its domain and
    configured an identity provider (a domain is verified by one workspace at most)."""
    domain = (
        EmailDomain.objects.filter(domain=email_domain_of(email), verified_at__isnull=False)
        .select_related("workspace__sign_in")
        .first()
    )
    if domain is None:
        return None
    sign_in = sign_in_for(workspace=domain.workspace)
    if sign_in is None or not sign_in.configured or domain.workspace.is_template:
        return None
    return sign_in


def certificate_summary(pem: str) -> str:
    """Who issued a stored certificate and until when, for the settings page."""
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return "(unreadable: paste it again)"
    return (
        f"{certificate.subject.rfc4514_string()}, valid until "
        f"{certificate.not_valid_after_utc:%Y-%m-%d}"
    )
