from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django_tenants.models import DomainMixin, TenantMixin


class Workspace(TenantMixin):
    """A team's workspace: one PostgreSQL schema holding its agents, workflows and runs.

    Schemas are created by `tenants.provisioning` (a clone of the migrated template schema),
    never implicitly on save.
    """

    name = models.CharField(max_length=80)
    slug = models.SlugField(max_length=40, unique=True)
    is_template = models.BooleanField(
        default=False, help_text="The schema new workspaces are cloned from. Never a real team."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    webhook_secret_encrypted = models.TextField(
        blank=True, help_text="Signs outbound webhooks. Encrypted; shown once when rotated."
    )
    run_retention_days = models.PositiveIntegerField(
        default=90,
        help_text="Finished workflow runs older than this are deleted daily; 0 keeps them.",
    )
    # Deletion (privacy/workspaces.py, docs/privacy.md): requested → inaccessible for the grace
    # period, restorable; after `purge_after` a periodic task drops the schema and its files.
    deletion_requested_at = models.DateTimeField(null=True, blank=True)
    deletion_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    purge_after = models.DateTimeField(
        null=True, blank=True, help_text="When the scheduled deletion becomes final."
    )
    purged_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Schema and files deleted; the row stays only when financial records name it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    auto_create_schema = False
    auto_drop_schema = True

    # TenantMixin comes from untyped django-tenants, which leaves the default manager untyped.
    objects: ClassVar[models.Manager[Workspace]]

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_template"], condition=Q(is_template=True), name="one_template_workspace"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_pending_deletion(self) -> bool:
        return self.deletion_requested_at is not None and self.purged_at is None


class Domain(DomainMixin):
    """django-tenants' host → workspace table. Routing is path-based (`/w/<slug>/`); rows here
    are custom host names staff may attach for host-based routing (docs/tenancy.md)."""

    class Meta:
        ordering = ["domain"]


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workspace__name", "user__email"]
        constraints = [
            models.UniqueConstraint(fields=["user", "workspace"], name="one_membership_per_user"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.role})"


class Invitation(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                "workspace",
                Lower("email"),
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="one_pending_invitation_per_email",
            ),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="invitation_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.email} → {self.workspace}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_pending(self) -> bool:
        """Can still be accepted: not used, not revoked, not expired."""
        return self.accepted_at is None and self.revoked_at is None and not self.is_expired


class ApiKey(models.Model):
    """A workspace API key. Only a SHA-256 of the secret is stored; the prefix is shown so
    people can tell keys apart."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AuditEvent(models.Model):
    """Security-relevant actions. Append-only: nothing updates or deletes rows here."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=48, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_label = models.CharField(max_length=254, blank=True)
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events"
    )
    target_type = models.CharField(max_length=48, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=254, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["workspace", "-created_at"], name="audit_ws_time")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} by {self.actor_label or '-'}"


class WorkspaceSignIn(models.Model):
    """How people sign in to one workspace (docs/sso.md): its identity provider (OpenID Connect
    or SAML 2.0, `kind`), and what it requires of a member's session (SSO for its verified
    domains, two-factor).

    The client secret is stored encrypted (core/crypto.py) and never rendered back in full.
    allauth sees this row as an in-memory SocialApp whose provider id is `provider_id`
    (tenants/sso/adapter.py); no SocialApp row holds the secret in plain text."""

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="sign_in")
    display_name = models.CharField(max_length=80, default="Single sign-on")
    oidc_server_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="The issuer or its discovery URL (…/.well-known/openid-configuration).",
    )
    oidc_client_id = models.CharField(max_length=255, blank=True)
    oidc_client_secret_encrypted = models.TextField(blank=True)
    kind = models.CharField(
        max_length=8,
        choices=[("oidc", "OpenID Connect"), ("saml", "SAML 2.0")],
        default="oidc",
        help_text="Which protocol the workspace's identity provider speaks.",
    )
    saml_entity_id = models.CharField(max_length=500, blank=True)
    saml_sso_url = models.URLField(max_length=500, blank=True)
    saml_x509cert = models.TextField(blank=True, help_text="The IdP's signing certificate (PEM).")
    saml_email_attribute = models.CharField(
        max_length=255, blank=True, help_text="The attribute carrying the email (optional)."
    )
    sso_required = models.BooleanField(
        default=False,
        help_text="Members whose email is in a verified domain must sign in through SSO.",
    )
    mfa_required = models.BooleanField(
        default=False, help_text="Members must have two-factor authentication to open it."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workspace_id"]

    def __str__(self) -> str:
        return f"sign-in of {self.workspace}"

    @property
    def provider_id(self) -> str:
        """allauth's provider id for this workspace's IdP: stable, one per workspace."""
        return f"workspace-{self.workspace_id}"

    @property
    def oidc_configured(self) -> bool:
        return self.kind == "oidc" and bool(self.oidc_server_url and self.oidc_client_id)

    @property
    def saml_configured(self) -> bool:
        return self.kind == "saml" and bool(
            self.saml_entity_id and self.saml_sso_url and self.saml_x509cert
        )

    @property
    def configured(self) -> bool:
        """Whether the workspace has an identity provider of either kind."""
        return self.oidc_configured or self.saml_configured


class EmailDomain(models.Model):
    """An email domain a workspace claims. Verified when a DNS TXT record at
    `_agentmarket-verify.<domain>` carries `agentmarket-verify=<token>` (tenants/sso/domains.py).
    A domain is verified by at most one workspace at a time."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="email_domains")
    domain = models.CharField(max_length=253)
    token = models.CharField(max_length=64)
    verified_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "domain"], name="one_claim_per_domain"),
            models.UniqueConstraint(
                fields=["domain"],
                condition=Q(verified_at__isnull=False),
                name="domain_verified_once",
            ),
        ]

    def __str__(self) -> str:
        return self.domain

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None
