"""Regressions for findings of the security review: each test is an attack that must fail."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import User
from core.exceptions import PermissionDenied
from tenants import audit, services
from tenants.models import ApiKey, AuditEvent, Membership, Role
from tenants.permissions import Access, Perm
from tests.helpers.personas import PASSWORD, World, access_of, make_user

pytestmark = pytest.mark.django_db


def _key_access(owner_access: Access, scopes: list[str]) -> Access:
    key, _ = services.api_key_create(access=owner_access, name="k", scopes=scopes)
    return Access(workspace=key.workspace, api_key=key)


@pytest.mark.parametrize("role", [Role.ADMIN, Role.OWNER])
def test_an_api_key_cannot_mint_admins_or_owners(owner_access: Access, role: Role) -> None:
    key_access = _key_access(
        owner_access, [Perm.MEMBERS_INVITE, Perm.MEMBERS_MANAGE, Perm.MEMBERS_VIEW]
    )
    with pytest.raises(PermissionDenied, match="cannot grant"):
        services.invitation_create(access=key_access, email="attacker@evil.test", role=role)


def test_an_api_key_grants_only_roles_within_its_own_scopes(owner_access: Access) -> None:
    narrow = _key_access(owner_access, [Perm.MEMBERS_INVITE])
    with pytest.raises(PermissionDenied, match="would need"):
        services.invitation_create(access=narrow, email="x@example.com", role=Role.MEMBER)
    broad = _key_access(
        owner_access,
        [Perm.MEMBERS_INVITE, Perm.WORKSPACE_VIEW, Perm.MEMBERS_VIEW, Perm.BUILD, Perm.RUN],
    )
    invitation, _ = services.invitation_create(
        access=broad, email="x@example.com", role=Role.MEMBER
    )
    assert invitation.role == Role.MEMBER


def test_keys_are_revoked_when_their_creator_loses_key_rights(world: World, owner: User) -> None:
    admin = make_user("admin@alpha.test")
    admin_membership = Membership.objects.create(
        user=admin, workspace=world.workspace_a, role=Role.ADMIN
    )
    key, secret = services.api_key_create(
        access=access_of(admin, world.workspace_a), name="admin's", scopes=[Perm.RUN]
    )

    services.membership_change_role(
        access=access_of(owner, world.workspace_a),
        membership_id=admin_membership.pk,
        role=Role.MEMBER,
    )

    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert AuditEvent.objects.filter(
        action=audit.Action.API_KEY_REVOKED, target_id=str(key.pk)
    ).exists()
    response = APIClient().get("/api/v1/workspace/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 401


def test_keys_are_revoked_when_their_creator_is_removed(world: World, owner: User) -> None:
    admin = make_user("admin@alpha.test")
    membership = Membership.objects.create(user=admin, workspace=world.workspace_a, role=Role.ADMIN)
    key, _ = services.api_key_create(
        access=access_of(admin, world.workspace_a), name="x", scopes=[Perm.RUN]
    )
    services.membership_remove(
        access=access_of(owner, world.workspace_a), membership_id=membership.pk
    )
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None


def test_removing_an_unknown_member_from_the_page_is_404_not_500(owner_client: Client) -> None:
    url = reverse("member_remove", kwargs={"workspace_slug": "alpha", "membership_id": 999999})
    assert owner_client.post(url).status_code == 404


@pytest.mark.parametrize("header", ["   ", "Bearer", "Bearer a b"])
def test_blank_or_broken_authorization_headers_are_401(world: World, header: str) -> None:
    response = APIClient().get("/api/v1/workspace/", HTTP_AUTHORIZATION=header)
    assert response.status_code in (401, 403)
    assert "error" in response.json()


def test_a_malformed_forwarded_address_never_fails_the_sign_in(
    client: Client, owner: User, settings
) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    response = client.post(
        "/accounts/login/",
        {"login": "owner@alpha.test", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="198.51.100.7:5678",
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action=audit.Action.SIGN_IN)
    assert event.ip_address == "10.0.0.2"


def test_the_api_key_page_is_never_cached(owner_client: Client) -> None:
    response = owner_client.get(reverse("api_keys", kwargs={"workspace_slug": "alpha"}))
    assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]


def test_a_caller_demoted_a_moment_ago_acts_with_the_new_role(world: World, owner: User) -> None:
    admin = make_user("admin@alpha.test")
    admin_membership = Membership.objects.create(
        user=admin, workspace=world.workspace_a, role=Role.ADMIN
    )
    stale_admin_access = access_of(admin, world.workspace_a)  # read before the demotion
    Membership.objects.filter(pk=admin_membership.pk).update(role=Role.VIEWER)
    target = Membership.objects.get(user=world.member, workspace=world.workspace_a)
    with pytest.raises(PermissionDenied):
        services.membership_change_role(
            access=stale_admin_access, membership_id=target.pk, role=Role.VIEWER
        )
    assert Membership.objects.get(pk=target.pk).role == Role.MEMBER
