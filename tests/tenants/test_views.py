from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import User
from tenants import audit, services
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Role, Workspace
from tenants.permissions import Perm
from tests.helpers.personas import World, access_of, logged_in, make_user

pytestmark = pytest.mark.django_db

PAGES = ["workspace_dashboard", "members", "api_keys", "audit_log", "workspace_settings"]
OWNER_ONLY_PAGES = ["api_keys", "audit_log", "workspace_settings"]


def _url(name: str, slug: str = "alpha", **kwargs: int) -> str:
    return reverse(name, kwargs={"workspace_slug": slug, **kwargs})


def _post_urls(world: World) -> list[str]:
    membership = Membership.objects.get(user=world.member, workspace=world.workspace_a)
    invitation, _ = services.invitation_create(
        access=access_of(world.owner, world.workspace_a),
        email="pending@example.com",
        role=Role.MEMBER,
    )
    key, _ = services.api_key_create(
        access=access_of(world.owner, world.workspace_a), name="k", scopes=[Perm.RUN]
    )
    return [
        _url("member_invite"),
        _url("member_role", membership_id=membership.pk),
        _url("member_remove", membership_id=membership.pk),
        _url("invitation_revoke", invitation_id=invitation.pk),
        _url("api_keys"),
        _url("api_key_revoke", key_id=key.pk),
        _url("workspace_settings"),
    ]


# --- isolation: every workspace page and action


@pytest.mark.parametrize("page", PAGES)
def test_outsider_gets_404_on_every_workspace_page(outsider_client: Client, page: str) -> None:
    response = outsider_client.get(_url(page))
    assert response.status_code == 404
    assert b"Alpha Inc" not in response.content


def test_outsider_gets_404_on_every_workspace_action_and_nothing_changes(
    world: World, outsider_client: Client
) -> None:
    urls = _post_urls(world)
    before = (
        Membership.objects.count(),
        Invitation.objects.filter(revoked_at=None).count(),
        ApiKey.objects.filter(revoked_at=None).count(),
    )
    for url in urls:
        response = outsider_client.post(
            url, {"role": "owner", "email": "x@example.com", "name": "Hacked", "scopes": ["run"]}
        )
        assert response.status_code == 404, url
    assert (
        Membership.objects.count(),
        Invitation.objects.filter(revoked_at=None).count(),
        ApiKey.objects.filter(revoked_at=None).count(),
    ) == before
    assert Workspace.objects.get(slug="alpha").name == "Alpha Inc"


def test_a_missing_workspace_looks_the_same_as_a_foreign_one(outsider_client: Client) -> None:
    assert outsider_client.get(_url("workspace_dashboard", slug="no-such-ws")).status_code == 404


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(client: Client, page: str) -> None:
    response = client.get(_url(page))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/w/alpha/")


@pytest.mark.parametrize("page", OWNER_ONLY_PAGES)
def test_members_are_refused_admin_pages_with_403(member_client: Client, page: str) -> None:
    assert member_client.get(_url(page)).status_code == 403


def test_member_actions_beyond_their_role_are_refused(world: World, member_client: Client) -> None:
    owner_membership = Membership.objects.get(user=world.owner, workspace=world.workspace_a)
    assert (
        member_client.post(_url("member_invite"), {"email": "a@b.co", "role": "member"}).status_code
        == 403
    )
    assert (
        member_client.post(
            _url("member_role", membership_id=owner_membership.pk), {"role": "viewer"}
        ).status_code
        == 403
    )
    assert Membership.objects.get(pk=owner_membership.pk).role == Role.OWNER


@pytest.mark.parametrize("page", PAGES)
def test_owner_sees_every_page(owner_client: Client, page: str) -> None:
    response = owner_client.get(_url(page))
    assert response.status_code == 200
    assert b"Alpha Inc" in response.content


# --- workspaces: create, list, switch


def test_create_workspace_shows_errors_beside_the_slug_field(owner_client: Client) -> None:
    response = owner_client.post(reverse("workspace_create"), {"name": "Ops", "slug": "admin"})
    assert response.status_code == 200
    assert "reserved" in str(response.context["form"].errors["slug"])
    assert not Workspace.objects.filter(name="Ops").exists()


def test_create_workspace_lands_in_it_as_owner(owner_client: Client, owner: User) -> None:
    response = owner_client.post(
        reverse("workspace_create"), {"name": "Second Team", "slug": "second-team"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/w/second-team/"
    workspace = Workspace.objects.get(slug="second-team")
    assert Membership.objects.get(workspace=workspace, user=owner).role == Role.OWNER
    assert owner_client.get(response["Location"]).status_code == 200


def test_a_user_in_two_workspaces_can_switch(world: World, owner: User) -> None:
    Membership.objects.create(user=owner, workspace=world.workspace_b, role=Role.VIEWER)
    client = logged_in(owner)
    listing = client.get(reverse("workspace_list"))
    assert b"Alpha Inc" in listing.content
    assert b"Bravo Ltd" in listing.content
    assert client.get(_url("workspace_dashboard", slug="bravo")).status_code == 200
    # The home redirect returns to the workspace used last.
    assert client.get(reverse("workspace_home_redirect"))["Location"] == "/w/bravo/"
    client.get(_url("workspace_dashboard"))
    assert client.get(reverse("workspace_home_redirect"))["Location"] == "/w/alpha/"


def test_switcher_lists_only_my_workspaces(owner_client: Client) -> None:
    response = owner_client.get(_url("workspace_dashboard"))
    names = [m.workspace.name for m in response.context["switcher"].memberships]
    assert names == ["Alpha Inc"]


# --- members page


def test_htmx_invite_swaps_the_members_panel(owner_client: Client) -> None:
    response = owner_client.post(
        _url("member_invite"),
        {"email": "teammate@example.com", "role": "viewer"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert 'id="members-panel"' in html
    assert "teammate@example.com" in html
    assert Invitation.objects.get(email="teammate@example.com").role == Role.VIEWER


def test_invite_errors_are_shown_beside_the_field(owner_client: Client) -> None:
    response = owner_client.post(
        _url("member_invite"), {"email": "member@alpha.test", "role": "member"}
    )
    assert response.status_code == 400
    assert "already a member" in str(response.context["invite_form"].errors["email"])
    response = owner_client.post(_url("member_invite"), {"email": "nope", "role": "member"})
    assert response.status_code == 400
    assert "email" in response.context["invite_form"].errors


def test_owner_changes_a_role_and_removes_a_member(world: World, owner_client: Client) -> None:
    membership = Membership.objects.get(user=world.member, workspace=world.workspace_a)
    owner_client.post(_url("member_role", membership_id=membership.pk), {"role": "admin"})
    assert Membership.objects.get(pk=membership.pk).role == Role.ADMIN
    owner_client.post(_url("member_remove", membership_id=membership.pk))
    assert not Membership.objects.filter(pk=membership.pk).exists()
    actions = set(
        AuditEvent.objects.filter(workspace=world.workspace_a).values_list("action", flat=True)
    )
    assert {audit.Action.MEMBER_ROLE_CHANGED, audit.Action.MEMBER_REMOVED} <= actions


def test_last_owner_demotion_is_refused_with_a_message(world: World, owner_client: Client) -> None:
    own = Membership.objects.get(user=world.owner, workspace=world.workspace_a)
    response = owner_client.post(
        _url("member_role", membership_id=own.pk), {"role": "member"}, follow=True
    )
    assert "at least one owner" in response.content.decode()
    assert Membership.objects.get(pk=own.pk).role == Role.OWNER


def test_members_page_query_count_does_not_grow_with_members(
    world: World, owner_client: Client
) -> None:
    def queries_for_members_page() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            response = owner_client.get(_url("members"))
        assert response.status_code == 200
        return [q["sql"] for q in captured.captured_queries]

    queries_for_members_page()  # the first visit also remembers the workspace in the session
    few = queries_for_members_page()
    for i in range(15):
        Membership.objects.create(
            user=make_user(f"extra{i}@alpha.test"), workspace=world.workspace_a, role=Role.VIEWER
        )
        services.invitation_create(
            access=access_of(world.owner, world.workspace_a),
            email=f"invitee{i}@example.com",
            role=Role.VIEWER,
        )
    many = queries_for_members_page()
    assert len(many) == len(few), "\n".join(many)
    assert len(many) <= 20, "\n".join(many)


# --- API keys page


def test_api_key_secret_is_shown_once(owner_client: Client) -> None:
    response = owner_client.post(_url("api_keys"), {"name": "Zapier", "scopes": ["run"]})
    assert response.status_code == 200
    secret = response.context["new_secret"]
    assert secret.startswith("amk_")
    assert secret in response.content.decode()
    again = owner_client.get(_url("api_keys"))
    assert secret not in again.content.decode()
    assert ApiKey.objects.get(name="Zapier").prefix in again.content.decode()


def test_api_key_form_errors_name_the_field(owner_client: Client) -> None:
    response = owner_client.post(_url("api_keys"), {"name": "", "scopes": []})
    assert response.status_code == 400
    assert {"name", "scopes"} <= set(response.context["form"].errors)


def test_revoking_a_key_from_the_page(world: World, owner_client: Client) -> None:
    key, _ = services.api_key_create(
        access=access_of(world.owner, world.workspace_a), name="old", scopes=[Perm.RUN]
    )
    owner_client.post(_url("api_key_revoke", key_id=key.pk))
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None


# --- audit log and settings


def test_audit_log_lists_and_filters_this_workspace_only(
    world: World, owner_client: Client
) -> None:
    services.api_key_create(
        access=access_of(world.outsider, world.workspace_b), name="bravo-key", scopes=[Perm.RUN]
    )
    services.api_key_create(
        access=access_of(world.owner, world.workspace_a), name="alpha-key", scopes=[Perm.RUN]
    )
    response = owner_client.get(_url("audit_log"), {"action": audit.Action.API_KEY_CREATED})
    html = response.content.decode()
    assert "alpha-key" in html
    assert "bravo-key" not in html
    events = list(response.context["page"])
    assert events
    assert all(e.action == audit.Action.API_KEY_CREATED for e in events)


def test_rename_workspace(owner_client: Client) -> None:
    response = owner_client.post(_url("workspace_settings"), {"name": "Alpha Corp"})
    assert response.status_code == 302
    assert Workspace.objects.get(slug="alpha").name == "Alpha Corp"
    response = owner_client.post(_url("workspace_settings"), {"name": ""})
    assert "name" in response.context["form"].errors


# --- invitations


def test_invitation_page_for_anonymous_offers_sign_in(world: World, client: Client) -> None:
    _, token = services.invitation_create(
        access=access_of(world.owner, world.workspace_a),
        email="guest@example.com",
        role=Role.MEMBER,
    )
    response = client.get(reverse("invitation_accept", args=[token]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Alpha Inc" in html
    assert "/accounts/login/" in html


def test_invited_user_accepts_from_the_page(world: World) -> None:
    _, token = services.invitation_create(
        access=access_of(world.owner, world.workspace_a),
        email="guest@example.com",
        role=Role.VIEWER,
    )
    guest = make_user("guest@example.com")
    response = logged_in(guest).post(reverse("invitation_accept", args=[token]))
    assert response["Location"] == "/w/alpha/"
    assert Membership.objects.get(user=guest, workspace=world.workspace_a).role == Role.VIEWER


def test_wrong_user_and_bad_token_get_clear_messages(world: World, outsider_client: Client) -> None:
    _, token = services.invitation_create(
        access=access_of(world.owner, world.workspace_a),
        email="guest@example.com",
        role=Role.VIEWER,
    )
    response = outsider_client.post(reverse("invitation_accept", args=[token]))
    assert response.status_code == 403
    assert "guest@example.com" in response.content.decode()
    response = outsider_client.get(reverse("invitation_accept", args=["not-a-token"]))
    assert response.status_code == 404
    assert "not valid" in response.content.decode()


def test_an_expired_invitation_says_so_before_anyone_tries(world: World, client: Client) -> None:
    invitation, token = services.invitation_create(
        access=access_of(world.owner, world.workspace_a), email="late@example.com", role="member"
    )
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=invitation.created_at)
    html = client.get(reverse("invitation_accept", args=[token])).content.decode()
    assert "expired" in html
    assert "Sign up to accept" not in html
