"""Writes for workspaces, memberships, invitations and API keys. Each service owns its
transaction, checks permissions through `Access`, and records an audit event."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from core import mail
from core.exceptions import Conflict, NotFound, PermissionDenied, ValidationFailed
from core.hooks import MemberInviting, WorkspaceCreated, member_inviting, workspace_created
from notifications.kinds import Kind
from notifications.services import Event, notifications_resolve_on_commit, notify_later
from tenants import audit, provisioning, selectors
from tenants.models import ApiKey, Invitation, Membership, Role, Workspace
from tenants.permissions import (
    API_KEY_SCOPES,
    ROLE_PERMISSIONS,
    Access,
    Perm,
    assignable_roles,
    role_can,
)

if TYPE_CHECKING:
    from accounts.models import User

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,38}[a-z0-9])$")
API_KEY_PREFIX = "amk_"
MAX_RETENTION_DAYS = 3650  # how long a workspace may keep finished runs (0 keeps them)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def workspace_slug_validate(slug: str) -> str:
    slug = (slug or "").strip().lower()
    problem = None
    if not slug:
        problem = "Choose an address for the workspace."
    elif not SLUG_RE.match(slug) or "--" in slug:
        problem = (
            "Use 3–40 lowercase letters, digits and single hyphens, starting and ending "
            "with a letter or digit."
        )
    elif slug in settings.WORKSPACE_RESERVED_SLUGS:
        problem = f"'{slug}' is reserved. Choose another address."
    elif Workspace.objects.filter(slug=slug).exists():
        problem = f"The address '{slug}' is already taken."
    if problem:
        raise ValidationFailed(problem, fields={"slug": [problem]})
    return slug


def workspace_schema_name(slug: str) -> str:
    return "ws_" + slug.replace("-", "_")


def workspace_create(*, user: User, name: str, slug: str) -> Workspace:
    """Create a workspace with its own schema (cloned from the template) and make `user` its
    owner. All or nothing: a failure leaves no row and no schema."""
    name = (name or "").strip()
    if not name:
        raise ValidationFailed(
            "Give the workspace a name.", fields={"name": ["This field is required."]}
        )
    if len(name) > 80:
        raise ValidationFailed("The name is too long.", fields={"name": ["At most 80 characters."]})
    slug = workspace_slug_validate(slug)
    template = provisioning.template_workspace()
    try:
        with transaction.atomic():
            workspace = Workspace(
                schema_name=workspace_schema_name(slug), name=name, slug=slug, created_by=user
            )
            workspace.save(verbosity=0)
            provisioning.clone_schema(template.schema_name, workspace.schema_name)
            Membership.objects.create(user=user, workspace=workspace, role=Role.OWNER)
            audit.record(
                action=audit.Action.WORKSPACE_CREATED,
                actor=user,
                workspace=workspace,
                target=workspace,
            )
    except IntegrityError as exc:
        message = f"The address '{slug}' is already taken."
        raise ValidationFailed(message, fields={"slug": [message]}) from exc
    # Committed: apps above (billing puts it on the default plan) add what they keep for it.
    workspace_created.fire(WorkspaceCreated(workspace_id=workspace.pk, owner_id=user.pk))
    return workspace


@transaction.atomic
def workspace_update(*, access: Access, name: str) -> Workspace:
    access.require(Perm.WORKSPACE_UPDATE)
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise ValidationFailed(
            "Give the workspace a name of 1–80 characters.",
            fields={"name": ["Enter 1–80 characters."]},
        )
    workspace = access.workspace
    old = workspace.name
    workspace.name = name
    workspace.save(update_fields=["name", "updated_at"])
    audit.record_for(
        access,
        action=audit.Action.WORKSPACE_UPDATED,
        target=workspace,
        metadata={"name": {"from": old, "to": name}},
    )
    return workspace


@transaction.atomic
def workspace_retention_update(*, access: Access, days: int) -> Workspace:
    """Set how long finished runs are kept (0 keeps them); audited like a rename."""
    access.require(Perm.WORKSPACE_UPDATE)
    if not isinstance(days, int) or not 0 <= days <= MAX_RETENTION_DAYS:
        raise ValidationFailed(
            f"Keep runs for 0–{MAX_RETENTION_DAYS} days.",
            fields={"run_retention_days": [f"Enter a number from 0 to {MAX_RETENTION_DAYS}."]},
        )
    workspace = Workspace.objects.select_for_update().get(pk=access.workspace.pk)
    old = workspace.run_retention_days
    if old == days:
        return workspace
    workspace.run_retention_days = days
    workspace.save(update_fields=["run_retention_days", "updated_at"])
    access.workspace.run_retention_days = days
    audit.record_for(
        access,
        action=audit.Action.WORKSPACE_UPDATED,
        target=workspace,
        metadata={"run_retention_days": {"from": old, "to": days}},
    )
    return workspace


def _check_role_assignment(access: Access, role: str) -> None:
    if role not in Role.values:
        raise ValidationFailed(
            f"'{role}' is not a role.",
            fields={"role": [f"Choose one of: {', '.join(Role.values)}."]},
        )
    if access.api_key is None and Role(role) not in assignable_roles(access.role or ""):
        raise PermissionDenied(f"Your role cannot grant the '{role}' role.")
    if access.api_key is not None:
        # A key never hands out more than it holds itself: in practice member or viewer, and
        # only if the key has every scope of that role. Admins and owners are made by people.
        missing = ROLE_PERMISSIONS[Role(role)] - {Perm(s) for s in access.api_key.scopes}
        if missing:
            raise PermissionDenied(
                f"This API key cannot grant the '{role}' role: it would need "
                f"{', '.join(sorted(missing))}."
            )


def invitation_create(*, access: Access, email: str, role: str) -> tuple[Invitation, str]:
    """Invite `email` with `role`; returns the invitation and its one-time token (mailed)."""
    access.require(Perm.MEMBERS_INVITE)
    email = (email or "").strip().lower()
    if not email or "@" not in email:
        raise ValidationFailed(
            "Enter a valid email address.", fields={"email": ["Enter a valid email address."]}
        )
    _check_role_assignment(access, role)
    workspace = access.workspace
    if Membership.objects.filter(workspace=workspace, user__email__iexact=email).exists():
        message = f"{email} is already a member of this workspace."
        raise Conflict(message, fields={"email": [message]})
    token = secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            # An expired invitation is dead: retire it so the address can be invited afresh.
            Invitation.objects.filter(
                workspace=workspace,
                email__iexact=email,
                accepted_at__isnull=True,
                revoked_at__isnull=True,
                expires_at__lte=timezone.now(),
            ).update(revoked_at=timezone.now())
            member_inviting.check(MemberInviting(workspace_id=workspace.pk))
            invitation = Invitation.objects.create(
                workspace=workspace,
                email=email,
                role=role,
                token_hash=_digest(token),
                invited_by=access.user,
                expires_at=timezone.now() + timedelta(days=settings.INVITATION_TTL_DAYS),
            )
            audit.record_for(
                access,
                action=audit.Action.MEMBER_INVITED,
                target=invitation,
                target_label=email,
                metadata={"role": role},
            )
    except IntegrityError as exc:
        message = f"{email} already has a pending invitation."
        raise Conflict(message, fields={"email": [message]}) from exc
    url = settings.SITE_URL.rstrip("/") + reverse("invitation_accept", args=[token])
    # The invitation stands even if the mail server is down: it can be re-sent or revoked.
    transaction.on_commit(
        lambda: mail.notify(
            subject_text=f"You're invited to {workspace.name}",
            body=(
                f"{access.label} invited you to the workspace '{workspace.name}' as {role}.\n\n"
                f"Accept the invitation: {url}\n\nThe link expires in "
                f"{settings.INVITATION_TTL_DAYS} days."
            ),
            recipients=[email],
        ),
        robust=True,
    )
    # Someone who already has an account also finds it in their inbox (the email goes to
    # everyone: it is how a person without an account gets the link).
    notify_later(
        recipients=lambda: (
            get_user_model()
            .objects.filter(email__iexact=email, is_active=True)
            .values_list("pk", flat=True)
        ),
        event=Event(
            kind=Kind.INVITATION,
            dedupe_key=f"invitation:{invitation.pk}",
            title=f"You're invited to {workspace.name}",
            body=(
                f"{access.label} invited you to the workspace '{workspace.name}' as {role}. "
                f"The invitation expires in {settings.INVITATION_TTL_DAYS} days."
            ),
            url=reverse("invitation_accept", args=[token]),
            subject=invitation_subject(invitation.pk),
        ),
    )
    return invitation, token


def invitation_subject(invitation_id: int) -> str:
    """What an invitation's notification is about (revoked: it is retired)."""
    return f"tenants.invitation:{invitation_id}"


@transaction.atomic
def invitation_revoke(*, access: Access, invitation_id: int) -> Invitation:
    access.require(Perm.MEMBERS_INVITE)
    invitation = Invitation.objects.filter(
        workspace=access.workspace,
        pk=invitation_id,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
    ).first()
    if invitation is None:
        raise NotFound("No pending invitation with that id in this workspace.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit.record_for(
        access,
        action=audit.Action.INVITATION_REVOKED,
        target=invitation,
        target_label=invitation.email,
    )
    notifications_resolve_on_commit(subjects=[invitation_subject(invitation.pk)])
    return invitation


def invitation_lookup(*, token: str) -> Invitation:
    invitation = (
        Invitation.objects.select_related("workspace", "invited_by")
        .filter(token_hash=_digest(token))
        .first()
    )
    if invitation is None or invitation.revoked_at is not None:
        raise NotFound("This invitation link is not valid. Ask for a new one.")
    return invitation


def invitation_accept(*, token: str, user: User) -> Membership:
    with transaction.atomic():
        invitation = invitation_lookup(token=token)
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.accepted_at is not None:
            existing = Membership.objects.filter(workspace=invitation.workspace, user=user).first()
            if existing is not None:
                return existing
            raise Conflict("This invitation has already been used.")
        if invitation.expires_at < timezone.now():
            raise Conflict("This invitation has expired. Ask for a new one.")
        if invitation.email.lower() != user.email.lower():
            raise PermissionDenied(
                f"This invitation is for {invitation.email}; you are signed in as {user.email}."
            )
        membership, created = Membership.objects.get_or_create(
            workspace=invitation.workspace, user=user, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        if created:
            audit.record(
                action=audit.Action.MEMBER_JOINED,
                actor=user,
                workspace=invitation.workspace,
                target=membership,
                target_label=user.email,
                metadata={"role": membership.role},
            )
    notifications_resolve_on_commit(subjects=[invitation_subject(invitation.pk)])
    return membership


def _locked_membership(access: Access, membership_id: int) -> tuple[Access, Membership]:
    """Lock the workspace row first, then its memberships: concurrent demotions of the last two
    owners serialise here instead of both succeeding. Returns the caller's access as it is now
    (re-read under the lock: a caller demoted a moment ago acts with the new role)."""
    Workspace.objects.select_for_update().get(pk=access.workspace.pk)
    if access.user is not None:
        role = (
            Membership.objects.filter(workspace=access.workspace, user=access.user)
            .values_list("role", flat=True)
            .first()
        )
        if role is None:
            raise NotFound("No member with that id in this workspace.")
        access = Access(workspace=access.workspace, user=access.user, role=role)
    membership = (
        Membership.objects.select_for_update()
        .select_related("user")
        .filter(workspace=access.workspace, pk=membership_id)
        .first()
    )
    if membership is None:
        raise NotFound("No member with that id in this workspace.")
    return access, membership


def _other_owners(membership: Membership) -> int:
    return (
        Membership.objects.filter(workspace=membership.workspace, role=Role.OWNER)
        .exclude(pk=membership.pk)
        .count()
    )


def _check_may_manage(access: Access, membership: Membership) -> None:
    access.require(Perm.MEMBERS_MANAGE)
    if membership.role == Role.OWNER and access.api_key is None and access.role != Role.OWNER:
        raise PermissionDenied("Only an owner can change or remove another owner.")
    if membership.role == Role.OWNER and access.api_key is not None:
        raise PermissionDenied("API keys cannot change or remove owners.")


def membership_change_role(*, access: Access, membership_id: int, role: str) -> Membership:
    with transaction.atomic():
        access, membership = _locked_membership(access, membership_id)
        _check_may_manage(access, membership)
        _check_role_assignment(access, role)
        if membership.role == role:
            return membership
        if membership.role == Role.OWNER and _other_owners(membership) == 0:
            raise Conflict(
                "A workspace needs at least one owner. Make someone else an owner first.",
                fields={"role": ["The last owner cannot be demoted."]},
            )
        old = membership.role
        membership.role = role
        membership.save(update_fields=["role", "updated_at"])
        audit.record_for(
            access,
            action=audit.Action.MEMBER_ROLE_CHANGED,
            target=membership,
            target_label=membership.user.email,
            metadata={"from": old, "to": role},
        )
        if not role_can(role, Perm.API_KEYS_MANAGE):
            _revoke_keys_created_by(access, membership)
    return membership


def _revoke_keys_created_by(access: Access, membership: Membership) -> None:
    """Keys outlive nobody's access: when a person can no longer manage keys here (removed or
    demoted), the keys they created in this workspace are revoked too."""
    keys = ApiKey.objects.select_for_update().filter(
        workspace=access.workspace, created_by=membership.user, revoked_at__isnull=True
    )
    for key in keys:
        _revoke_key(access, key, reason=f"creator {membership.user.email} lost access")


def membership_remove(*, access: Access, membership_id: int) -> None:
    with transaction.atomic():
        access, membership = _locked_membership(access, membership_id)
        leaving_self = access.user is not None and membership.user_id == access.user.pk
        if not leaving_self:
            _check_may_manage(access, membership)
        if membership.role == Role.OWNER and _other_owners(membership) == 0:
            raise Conflict("The last owner cannot be removed. Make someone else an owner first.")
        label = membership.user.email
        audit.record_for(
            access,
            action=audit.Action.MEMBER_REMOVED,
            target=membership,
            target_label=label,
            metadata={"role": membership.role, "left": leaving_self},
        )
        _revoke_keys_created_by(access, membership)
        membership.delete()


def api_key_create(
    *,
    access: Access,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; the full secret is returned once and only its SHA-256 is stored."""
    access.require(Perm.API_KEYS_MANAGE)
    if access.api_key is not None:
        raise PermissionDenied("API keys cannot create API keys.")
    name = (name or "").strip()
    errors: dict[str, list[str]] = {}
    if not name or len(name) > 80:
        errors["name"] = ["Give the key a name of 1–80 characters."]
    unknown = sorted(set(scopes) - set(API_KEY_SCOPES))
    if unknown:
        errors["scopes"] = [f"Unknown scope(s): {', '.join(unknown)}."]
    elif not scopes:
        errors["scopes"] = ["Choose at least one scope."]
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = ["The expiry must be in the future."]
    if errors:
        raise ValidationFailed(
            "The API key could not be created: "
            + "; ".join(f"{field}: {msgs[0]}" for field, msgs in errors.items()),
            fields=errors,
        )
    prefix = API_KEY_PREFIX + secrets.token_hex(4)
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        key = ApiKey.objects.create(
            workspace=access.workspace,
            name=name,
            prefix=prefix,
            key_hash=_digest(secret),
            scopes=sorted(set(scopes)),
            created_by=access.user,
            expires_at=expires_at,
        )
        audit.record_for(
            access,
            action=audit.Action.API_KEY_CREATED,
            target=key,
            metadata={"scopes": key.scopes},
        )
    return key, secret


@transaction.atomic
def api_key_revoke(*, access: Access, key_id: int) -> ApiKey:
    access.require(Perm.API_KEYS_MANAGE)
    key = ApiKey.objects.filter(workspace=access.workspace, pk=key_id).first()
    if key is None:
        raise NotFound("No API key with that id in this workspace.")
    if key.revoked_at is None:
        _revoke_key(access, key)
    return key


def _revoke_key(access: Access, key: ApiKey, *, reason: str = "") -> None:
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    audit.record_for(
        access,
        action=audit.Action.API_KEY_REVOKED,
        target=key,
        metadata={"reason": reason} if reason else None,
    )


def api_key_authenticate(*, secret: str) -> ApiKey:
    """The active key for a presented secret, or NotFound with a message safe to show."""
    if not secret.startswith(API_KEY_PREFIX) or len(secret) > 128:
        raise NotFound("Malformed API key.")
    key = selectors.api_key_by_hash(key_hash=_digest(secret))
    if key is None:
        raise NotFound("Unknown API key.")
    now = timezone.now()
    if key.revoked_at is not None:
        raise NotFound("This API key has been revoked.")
    if key.expires_at is not None and key.expires_at <= now:
        raise NotFound("This API key has expired.")
    if key.workspace.deletion_requested_at is not None or key.workspace.purged_at is not None:
        raise NotFound("This API key's workspace is scheduled for deletion.")
    # Throttle the write: last_used_at is shown to a minute's precision.
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
