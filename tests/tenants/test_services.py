from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import User
from core.exceptions import Conflict, NotFound, PermissionDenied, ValidationFailed
from tenants import audit, services
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Role, Workspace
from tenants.permissions import ROLE_PERMISSIONS, Access, Perm
from tests.helpers.personas import access_of, make_user

pytestmark = pytest.mark.django_db


def _add(user: User, workspace: Workspace, role: Role) -> Membership:
    return Membership.objects.create(user=user, workspace=workspace, role=role)


# --- roles and the permission helper


def test_role_powers_are_nested_from_viewer_to_owner() -> None:
    viewer, member, admin, owner = (
        ROLE_PERMISSIONS[r] for r in (Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER)
    )
    assert viewer < member < admin < owner
    assert Perm.WORKSPACE_DELETE in owner
    assert Perm.WORKSPACE_DELETE not in admin
    assert Perm.API_KEYS_MANAGE in admin
    assert Perm.API_KEYS_MANAGE not in member
    assert Perm.RUN in member
    assert Perm.RUN not in viewer


def test_member_cannot_invite_and_viewer_cannot_build(world, member: User) -> None:
    viewer = make_user("viewer@alpha.test")
    _add(viewer, world.workspace_a, Role.VIEWER)
    with pytest.raises(PermissionDenied):
        services.invitation_create(
            access=access_of(member, world.workspace_a), email="x@example.com", role=Role.MEMBER
        )
    viewer_access = access_of(viewer, world.workspace_a)
    assert viewer_access.can(Perm.MEMBERS_VIEW)
    assert not viewer_access.can(Perm.BUILD)


def test_api_key_access_is_limited_to_its_scopes(owner_access: Access) -> None:
    key, _secret = services.api_key_create(
        access=owner_access, name="ro", scopes=[Perm.MEMBERS_VIEW]
    )
    key_access = Access(workspace=key.workspace, api_key=key)
    assert key_access.can(Perm.MEMBERS_VIEW)
    assert not key_access.can(Perm.MEMBERS_MANAGE)
    assert not key_access.can(Perm.API_KEYS_MANAGE)


# --- last owner protection


def test_the_last_owner_cannot_be_demoted_or_removed(world, owner: User) -> None:
    access = access_of(owner, world.workspace_a)
    own = Membership.objects.get(user=owner, workspace=world.workspace_a)
    with pytest.raises(Conflict, match="at least one owner"):
        services.membership_change_role(access=access, membership_id=own.pk, role=Role.ADMIN)
    with pytest.raises(Conflict, match="last owner"):
        services.membership_remove(access=access, membership_id=own.pk)
    own.refresh_from_db()
    assert own.role == Role.OWNER


def test_with_a_second_owner_the_first_may_step_down(world, owner: User, member: User) -> None:
    access = access_of(owner, world.workspace_a)
    theirs = Membership.objects.get(user=member, workspace=world.workspace_a)
    services.membership_change_role(access=access, membership_id=theirs.pk, role=Role.OWNER)
    own = Membership.objects.get(user=owner, workspace=world.workspace_a)
    services.membership_change_role(access=access, membership_id=own.pk, role=Role.MEMBER)
    assert Membership.objects.get(pk=own.pk).role == Role.MEMBER
    event = AuditEvent.objects.filter(action=audit.Action.MEMBER_ROLE_CHANGED).first()
    assert event is not None
    assert event.metadata == {"from": "owner", "to": "member"}


def test_an_admin_cannot_grant_owner_or_touch_owners(world, owner: User, member: User) -> None:
    admin = make_user("admin@alpha.test")
    _add(admin, world.workspace_a, Role.ADMIN)
    admin_access = access_of(admin, world.workspace_a)
    theirs = Membership.objects.get(user=member, workspace=world.workspace_a)
    owners = Membership.objects.get(user=owner, workspace=world.workspace_a)
    with pytest.raises(PermissionDenied, match="cannot grant"):
        services.membership_change_role(
            access=admin_access, membership_id=theirs.pk, role=Role.OWNER
        )
    with pytest.raises(PermissionDenied, match="Only an owner"):
        services.membership_remove(access=admin_access, membership_id=owners.pk)
    services.membership_change_role(access=admin_access, membership_id=theirs.pk, role=Role.VIEWER)
    assert Membership.objects.get(pk=theirs.pk).role == Role.VIEWER


def test_a_member_may_leave_but_not_remove_others(world, owner: User, member: User) -> None:
    member_access = access_of(member, world.workspace_a)
    owners = Membership.objects.get(user=owner, workspace=world.workspace_a)
    with pytest.raises(PermissionDenied):
        services.membership_remove(access=member_access, membership_id=owners.pk)
    own = Membership.objects.get(user=member, workspace=world.workspace_a)
    services.membership_remove(access=member_access, membership_id=own.pk)
    assert not Membership.objects.filter(pk=own.pk).exists()


def test_membership_ids_of_another_workspace_are_not_found(world, owner: User) -> None:
    bravo_membership = Membership.objects.get(workspace=world.workspace_b)
    with pytest.raises(NotFound):
        services.membership_change_role(
            access=access_of(owner, world.workspace_a),
            membership_id=bravo_membership.pk,
            role=Role.VIEWER,
        )


# --- invitations


def test_invitation_is_mailed_and_accepted_by_the_invited_address(
    world, owner_access: Access, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        invitation, token = services.invitation_create(
            access=owner_access, email="New.Person@Example.com", role=Role.VIEWER
        )
    assert invitation.email == "new.person@example.com"
    assert invitation.token_hash != token
    assert len(mail.outbox) == 1
    assert token in mail.outbox[0].body
    newcomer = make_user("new.person@example.com")

    membership = services.invitation_accept(token=token, user=newcomer)

    assert membership.role == Role.VIEWER
    assert membership.workspace == world.workspace_a
    assert AuditEvent.objects.filter(action=audit.Action.MEMBER_JOINED, actor=newcomer).exists()
    # The link works once: accepting again returns the same membership, nothing new.
    assert services.invitation_accept(token=token, user=newcomer) == membership


def test_invitation_for_someone_else_is_refused(owner_access: Access) -> None:
    _invitation, token = services.invitation_create(
        access=owner_access, email="right@example.com", role=Role.MEMBER
    )
    wrong = make_user("wrong@example.com")
    with pytest.raises(PermissionDenied, match=re.escape("right@example.com")):
        services.invitation_accept(token=token, user=wrong)
    assert not Membership.objects.filter(user=wrong).exists()


def test_expired_and_revoked_invitations_are_refused(owner_access: Access) -> None:
    invitation, token = services.invitation_create(
        access=owner_access, email="late@example.com", role=Role.MEMBER
    )
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    late = make_user("late@example.com")
    with pytest.raises(Conflict, match="expired"):
        services.invitation_accept(token=token, user=late)

    second, token2 = services.invitation_create(
        access=owner_access, email="gone@example.com", role=Role.MEMBER
    )
    services.invitation_revoke(access=owner_access, invitation_id=second.pk)
    with pytest.raises(NotFound, match="not valid"):
        services.invitation_accept(token=token2, user=make_user("gone@example.com"))


def test_inviting_a_member_or_a_pending_address_again_is_a_conflict(owner_access: Access) -> None:
    with pytest.raises(Conflict) as excinfo:
        services.invitation_create(access=owner_access, email="MEMBER@alpha.test", role=Role.MEMBER)
    assert "already a member" in excinfo.value.fields["email"][0]
    services.invitation_create(access=owner_access, email="twice@example.com", role=Role.MEMBER)
    with pytest.raises(Conflict, match="pending invitation"):
        services.invitation_create(access=owner_access, email="Twice@example.com", role=Role.VIEWER)


def test_invitation_input_errors_name_the_field(owner_access: Access) -> None:
    with pytest.raises(ValidationFailed) as bad_email:
        services.invitation_create(access=owner_access, email="not-an-email", role=Role.MEMBER)
    assert "email" in bad_email.value.fields
    with pytest.raises(ValidationFailed) as bad_role:
        services.invitation_create(access=owner_access, email="a@example.com", role="emperor")
    assert "role" in bad_role.value.fields


# --- API keys


def test_api_key_is_shown_once_and_stored_hashed(owner_access: Access) -> None:
    key, secret = services.api_key_create(
        access=owner_access, name="CI", scopes=[Perm.RUN, Perm.MEMBERS_VIEW]
    )
    assert secret.startswith(key.prefix + "_")
    stored = ApiKey.objects.get(pk=key.pk)
    assert secret not in {stored.key_hash, stored.prefix, stored.name}
    assert services.api_key_authenticate(secret=secret) == key
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None
    event = AuditEvent.objects.get(action=audit.Action.API_KEY_CREATED, target_id=str(key.pk))
    assert event.actor_label == "owner@alpha.test"


def test_revoked_expired_unknown_and_malformed_keys_are_refused(owner_access: Access) -> None:
    key, secret = services.api_key_create(access=owner_access, name="temp", scopes=[Perm.RUN])
    services.api_key_revoke(access=owner_access, key_id=key.pk)
    with pytest.raises(NotFound, match="revoked"):
        services.api_key_authenticate(secret=secret)
    key2, secret2 = services.api_key_create(access=owner_access, name="exp", scopes=[Perm.RUN])
    ApiKey.objects.filter(pk=key2.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(NotFound, match="expired"):
        services.api_key_authenticate(secret=secret2)
    with pytest.raises(NotFound, match="Unknown"):
        services.api_key_authenticate(secret=secret2[:-3] + "xyz")
    with pytest.raises(NotFound, match="Malformed"):
        services.api_key_authenticate(secret="sk-live-something")
    assert (
        AuditEvent.objects.filter(
            action=audit.Action.API_KEY_REVOKED, target_id=str(key.pk)
        ).count()
        == 1
    )


def test_api_key_input_errors_name_the_field(owner_access: Access) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        services.api_key_create(access=owner_access, name="", scopes=["root"])
    assert set(excinfo.value.fields) == {"name", "scopes"}
    with pytest.raises(ValidationFailed) as expiry:
        services.api_key_create(
            access=owner_access,
            name="x",
            scopes=[Perm.RUN],
            expires_at=timezone.now() - timedelta(days=1),
        )
    assert "expires_at" in expiry.value.fields


def test_keys_of_another_workspace_cannot_be_revoked(world, owner_access: Access) -> None:
    bravo_key, _ = services.api_key_create(
        access=access_of(world.outsider, world.workspace_b), name="bravo", scopes=[Perm.RUN]
    )
    with pytest.raises(NotFound):
        services.api_key_revoke(access=owner_access, key_id=bravo_key.pk)
    assert ApiKey.objects.get(pk=bravo_key.pk).revoked_at is None
