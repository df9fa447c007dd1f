"""The workspace REST API as an integrator meets it: status codes, bodies and the one error
envelope `{"error": {"code", "message", "fields"}}`, for session and API-key callers, and the
owner / member / outsider personas (the outsider must never see anything of "alpha")."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Role, Workspace
from tests.helpers.personas import World, make_user

pytestmark = pytest.mark.django_db

WORKSPACES = "/api/v1/workspaces/"
WORKSPACE = "/api/v1/workspace/"
MEMBERS = "/api/v1/members/"
INVITATIONS = "/api/v1/invitations/"
API_KEYS = "/api/v1/api-keys/"
AUDIT = "/api/v1/audit-events/"

ALPHA_EMAILS = {"owner@alpha.test", "member@alpha.test"}


# --- helpers -------------------------------------------------------------------------------


def session_client(user: User, *, enforce_csrf_checks: bool = False) -> APIClient:
    client = APIClient(enforce_csrf_checks=enforce_csrf_checks)
    client.force_login(user)
    return client


def key_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def error_of(response: Any) -> dict[str, Any]:
    """The error object of a response, after checking it has exactly the envelope's shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}, body
    assert isinstance(error["code"], str)
    assert error["code"]
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["fields"], dict)
    return error


def create_key(user: User, slug: str, scopes: list[str], *, name: str = "ci") -> dict[str, Any]:
    response = session_client(user).post(
        API_KEYS, {"name": name, "scopes": scopes}, format="json", HTTP_X_WORKSPACE=slug
    )
    assert response.status_code == 201, response.content
    return response.json()


def membership_id(user: User, workspace: Workspace) -> int:
    return Membership.objects.get(user=user, workspace=workspace).pk


def emails_of(page: dict[str, Any]) -> set[str]:
    return {row["email"] for row in page["results"]}


# --- workspaces (session) ------------------------------------------------------------------


def test_owner_lists_own_workspaces_with_role(owner: User) -> None:
    response = session_client(owner).get(WORKSPACES)

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(row["slug"], row["role"]) for row in rows] == [("alpha", "owner")]
    assert rows[0]["name"] == "Alpha Inc"


def test_outsider_workspace_list_does_not_show_alpha(outsider: User) -> None:
    response = session_client(outsider).get(WORKSPACES)

    assert response.status_code == 200
    assert [(row["slug"], row["role"]) for row in response.json()["results"]] == [
        ("bravo", "owner")
    ]


def test_owner_creates_workspace_and_becomes_its_owner(owner: User) -> None:
    client = session_client(owner)

    response = client.post(WORKSPACES, {"name": "New Team", "slug": "new-team"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "new-team"
    assert body["name"] == "New Team"
    workspace = Workspace.objects.get(slug="new-team")
    assert body["id"] == workspace.pk
    assert Membership.objects.get(workspace=workspace, user=owner).role == Role.OWNER
    listed = {row["slug"]: row["role"] for row in client.get(WORKSPACES).json()["results"]}
    assert listed == {"alpha": "owner", "new-team": "owner"}
    # The new workspace is usable at once through the header.
    members = client.get(MEMBERS, HTTP_X_WORKSPACE="new-team")
    assert members.status_code == 200
    assert emails_of(members.json()) == {"owner@alpha.test"}


@pytest.mark.parametrize("slug", ["admin", "ab", "alpha", "Bad Slug!", "a--b"])
def test_bad_workspace_slugs_are_rejected_with_slug_field(owner: User, slug: str) -> None:
    before = Workspace.objects.count()

    response = session_client(owner).post(WORKSPACES, {"name": "X", "slug": slug}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert error["fields"]["slug"]
    assert Workspace.objects.count() == before


def test_workspace_create_without_name_names_the_field(owner: User) -> None:
    response = session_client(owner).post(WORKSPACES, {"slug": "nameless"}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert "name" in error["fields"]


# --- the X-Workspace header (session) ------------------------------------------------------


@pytest.mark.parametrize("path", [WORKSPACE, MEMBERS])
def test_session_call_without_workspace_header_names_the_header(owner: User, path: str) -> None:
    response = session_client(owner).get(path)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert "X-Workspace" in error["fields"]
    assert "X-Workspace" in error["message"]


@pytest.mark.parametrize("path", [WORKSPACE, MEMBERS, INVITATIONS, API_KEYS, AUDIT])
def test_outsider_naming_alpha_gets_404_and_no_data(outsider: User, path: str) -> None:
    response = session_client(outsider).get(path, HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    text = response.content.decode()
    assert "owner@alpha.test" not in text
    assert "Alpha Inc" not in text


def test_member_of_no_workspace_cannot_tell_existing_from_missing(outsider: User) -> None:
    client = session_client(outsider)

    existing = client.get(MEMBERS, HTTP_X_WORKSPACE="alpha")
    missing = client.get(MEMBERS, HTTP_X_WORKSPACE="no-such-workspace")

    assert existing.status_code == missing.status_code == 404
    assert existing.json() == missing.json()


def test_owner_reads_workspace_through_header(owner: User, workspace_a: Workspace) -> None:
    response = session_client(owner).get(WORKSPACE, HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == workspace_a.pk
    assert body["slug"] == "alpha"
    assert body["name"] == "Alpha Inc"


def test_owner_lists_members_paginated(owner: User) -> None:
    response = session_client(owner).get(MEMBERS, HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 200
    page = response.json()
    assert page["count"] == 2
    assert {"results", "count", "next", "previous"} <= set(page)
    roles = {row["email"]: row["role"] for row in page["results"]}
    assert roles == {"owner@alpha.test": "owner", "member@alpha.test": "member"}


def test_members_list_pages_with_limit_and_offset(owner: User) -> None:
    client = session_client(owner)

    first = client.get(MEMBERS, {"limit": 1}, HTTP_X_WORKSPACE="alpha").json()
    second = client.get(MEMBERS, {"limit": 1, "offset": 1}, HTTP_X_WORKSPACE="alpha").json()

    assert first["count"] == second["count"] == 2
    assert len(first["results"]) == len(second["results"]) == 1
    assert first["next"] is not None
    assert emails_of(first) | emails_of(second) == ALPHA_EMAILS


def test_members_list_query_count_does_not_grow_with_members(
    owner: User, workspace_a: Workspace
) -> None:
    client = session_client(owner)
    client.get(MEMBERS, HTTP_X_WORKSPACE="alpha")  # warm up anything cached per process

    with CaptureQueriesContext(connection) as few:
        assert client.get(MEMBERS, HTTP_X_WORKSPACE="alpha").json()["count"] == 2
    for n in range(5):
        Membership.objects.create(
            user=make_user(f"extra{n}@alpha.test"), workspace=workspace_a, role=Role.VIEWER
        )
    with CaptureQueriesContext(connection) as many:
        assert client.get(MEMBERS, HTTP_X_WORKSPACE="alpha").json()["count"] == 7

    assert len(many.captured_queries) == len(few.captured_queries)


def test_api_key_hot_path_is_read_only_and_does_not_grow_with_members(
    owner: User, workspace_a: Workspace
) -> None:
    client = key_client(create_key(owner, "alpha", ["members.view"])["key"])
    client.get(MEMBERS)  # the first use writes last_used_at

    with CaptureQueriesContext(connection) as few:
        assert client.get(MEMBERS).json()["count"] == 2
    for n in range(5):
        Membership.objects.create(
            user=make_user(f"extra{n}@alpha.test"), workspace=workspace_a, role=Role.VIEWER
        )
    with CaptureQueriesContext(connection) as many:
        assert client.get(MEMBERS).json()["count"] == 7

    assert len(many.captured_queries) == len(few.captured_queries)
    writes = [
        q["sql"]
        for q in few.captured_queries + many.captured_queries
        if q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))
    ]
    assert writes == []


# --- API keys: creation and storage -------------------------------------------------------


def test_owner_creates_api_key_and_sees_secret_once(owner: User, workspace_a: Workspace) -> None:
    # Given the owner signed in
    client = session_client(owner)

    # When they create a key for alpha
    response = client.post(
        API_KEYS,
        {"name": "ci", "scopes": ["workspace.view", "members.view"]},
        format="json",
        HTTP_X_WORKSPACE="alpha",
    )

    # Then the body carries the full secret, once
    assert response.status_code == 201, response.content
    body = response.json()
    secret = body["key"]
    assert secret.startswith("amk_")
    assert secret.startswith(body["prefix"] + "_")
    assert len(secret) > len(body["prefix"]) + 20
    assert sorted(body["scopes"]) == ["members.view", "workspace.view"]
    assert body["revoked_at"] is None

    # And only a hash of it is stored, nowhere the secret itself
    key = ApiKey.objects.get(pk=body["id"])
    assert key.workspace_id == workspace_a.pk
    assert key.prefix == body["prefix"]
    assert key.key_hash != secret
    random_part = secret.removeprefix(body["prefix"] + "_")
    for value in ApiKey.objects.filter(pk=key.pk).values().get().values():
        assert secret not in str(value)
        assert random_part not in str(value)

    # And the list never shows it again
    listed = client.get(API_KEYS, HTTP_X_WORKSPACE="alpha")
    assert listed.status_code == 200
    assert secret not in listed.content.decode()
    assert random_part not in listed.content.decode()
    rows = listed.json()["results"]
    assert [row["prefix"] for row in rows] == [body["prefix"]]
    assert "key" not in rows[0]


def test_api_key_has_the_documented_format(owner: User) -> None:
    key = create_key(owner, "alpha", ["members.view"])

    assert re.fullmatch(r"amk_[0-9a-f]{8}", key["prefix"])
    assert re.fullmatch(r"amk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", key["key"])


def test_api_key_list_shows_active_keys_before_revoked_ones(owner: User) -> None:
    client = session_client(owner)
    old = create_key(owner, "alpha", ["members.view"], name="old")
    revoked = create_key(owner, "alpha", ["members.view"], name="revoked")
    new = create_key(owner, "alpha", ["members.view"], name="new")
    assert client.delete(f"{API_KEYS}{revoked['id']}/", HTTP_X_WORKSPACE="alpha").status_code == 204

    rows = client.get(API_KEYS, HTTP_X_WORKSPACE="alpha").json()["results"]

    assert [row["name"] for row in rows] == ["new", "old", "revoked"]
    assert [row["revoked_at"] is None for row in rows] == [True, True, False]
    assert {rows[0]["id"], rows[1]["id"]} == {new["id"], old["id"]}


@pytest.mark.parametrize(
    "scopes", [["members.view", "not.a.scope"], ["api_keys.manage"], ["workspace.delete"], []]
)
def test_api_key_with_unknown_or_forbidden_scopes_is_rejected(owner: User, scopes: list) -> None:
    response = session_client(owner).post(
        API_KEYS, {"name": "ci", "scopes": scopes}, format="json", HTTP_X_WORKSPACE="alpha"
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert error["fields"]["scopes"]
    assert not ApiKey.objects.exists()


def test_api_key_expiry_in_the_past_is_rejected(owner: User) -> None:
    past = (timezone.now() - timedelta(days=1)).isoformat()

    response = session_client(owner).post(
        API_KEYS,
        {"name": "ci", "scopes": ["members.view"], "expires_at": past},
        format="json",
        HTTP_X_WORKSPACE="alpha",
    )

    assert response.status_code == 400
    assert error_of(response)["fields"]["expires_at"]
    assert not ApiKey.objects.exists()


def test_member_cannot_create_api_keys(member: User) -> None:
    response = session_client(member).post(
        API_KEYS,
        {"name": "mine", "scopes": ["members.view"]},
        format="json",
        HTTP_X_WORKSPACE="alpha",
    )

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert not ApiKey.objects.exists()


def test_member_cannot_list_api_keys(member: User, owner: User) -> None:
    create_key(owner, "alpha", ["members.view"])

    response = session_client(member).get(API_KEYS, HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert "amk_" not in response.content.decode()


# --- API keys: using them ------------------------------------------------------------------


def test_api_key_lists_only_its_workspace_members_without_header(owner: User) -> None:
    key = create_key(owner, "alpha", ["workspace.view", "members.view"])

    response = key_client(key["key"]).get(MEMBERS)

    assert response.status_code == 200
    page = response.json()
    assert page["count"] == 2
    assert emails_of(page) == ALPHA_EMAILS
    assert "outsider@bravo.test" not in response.content.decode()


def test_api_key_ignores_workspace_header(owner: User) -> None:
    key = create_key(owner, "alpha", ["workspace.view", "members.view"])
    client = key_client(key["key"])

    members = client.get(MEMBERS, HTTP_X_WORKSPACE="bravo")
    workspace = client.get(WORKSPACE, HTTP_X_WORKSPACE="bravo")

    assert members.status_code == 200
    assert emails_of(members.json()) == ALPHA_EMAILS
    assert "outsider@bravo.test" not in members.content.decode()
    assert workspace.status_code == 200
    assert workspace.json()["slug"] == "alpha"


def test_api_key_lists_only_its_own_workspace(owner: User) -> None:
    key = create_key(owner, "alpha", ["workspace.view"])

    response = key_client(key["key"]).get(WORKSPACES)

    assert response.status_code == 200
    assert [row["slug"] for row in response.json()["results"]] == ["alpha"]


def test_api_key_also_accepted_in_x_api_key_header(owner: User) -> None:
    key = create_key(owner, "alpha", ["members.view"])
    client = APIClient()

    response = client.get(MEMBERS, HTTP_X_API_KEY=key["key"])

    assert response.status_code == 200
    assert emails_of(response.json()) == ALPHA_EMAILS


def test_api_key_use_sets_last_used_at(owner: User) -> None:
    key = create_key(owner, "alpha", ["members.view"])
    assert key["last_used_at"] is None
    before = timezone.now()

    assert key_client(key["key"]).get(MEMBERS).status_code == 200

    last_used = ApiKey.objects.get(pk=key["id"]).last_used_at
    assert last_used is not None
    assert before <= last_used <= timezone.now()
    listed = session_client(owner).get(API_KEYS, HTTP_X_WORKSPACE="alpha").json()["results"]
    assert listed[0]["last_used_at"] is not None


def test_api_key_without_members_view_scope_is_denied(owner: User) -> None:
    key = create_key(owner, "alpha", ["workspace.view"])
    client = key_client(key["key"])

    response = client.get(MEMBERS)

    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "permission_denied"
    assert "members.view" in error["message"]
    assert "owner@alpha.test" not in response.content.decode()
    # The scope it does hold still works.
    assert client.get(WORKSPACE).status_code == 200


def test_api_key_cannot_create_api_keys(owner: User) -> None:
    key = create_key(owner, "alpha", ["workspace.view", "members.view", "members.manage"])

    response = key_client(key["key"]).post(
        API_KEYS, {"name": "child", "scopes": ["members.view"]}, format="json"
    )

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert list(ApiKey.objects.values_list("pk", flat=True)) == [key["id"]]


def test_api_key_cannot_create_workspaces(owner: User) -> None:
    key = create_key(owner, "alpha", ["workspace.view"])
    before = Workspace.objects.count()

    response = key_client(key["key"]).post(
        WORKSPACES, {"name": "By Key", "slug": "by-key"}, format="json"
    )

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert Workspace.objects.count() == before


def test_api_key_needs_no_csrf_token_but_session_does(owner: User) -> None:
    # A key may grant only roles within its own scopes: viewer needs both view scopes.
    key = create_key(owner, "alpha", ["members.invite", "members.view", "workspace.view"])
    csrf_client = APIClient(enforce_csrf_checks=True)
    csrf_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key['key']}")

    by_key = csrf_client.post(INVITATIONS, {"email": "k@x.test", "role": "viewer"}, format="json")
    by_session = session_client(owner, enforce_csrf_checks=True).post(
        INVITATIONS, {"email": "s@x.test"}, format="json", HTTP_X_WORKSPACE="alpha"
    )

    assert by_key.status_code == 201, by_key.content
    assert by_session.status_code == 403
    assert "CSRF" in error_of(by_session)["message"]
    assert not Invitation.objects.filter(email="s@x.test").exists()


def test_last_used_at_is_written_at_most_once_a_minute(owner: User) -> None:
    key = create_key(owner, "alpha", ["members.view"])
    client = key_client(key["key"])
    recent = timezone.now() - timedelta(seconds=30)
    stale = timezone.now() - timedelta(minutes=2)

    ApiKey.objects.filter(pk=key["id"]).update(last_used_at=recent)
    assert client.get(MEMBERS).status_code == 200
    after_recent = ApiKey.objects.get(pk=key["id"]).last_used_at
    ApiKey.objects.filter(pk=key["id"]).update(last_used_at=stale)
    assert client.get(MEMBERS).status_code == 200
    after_stale = ApiKey.objects.get(pk=key["id"]).last_used_at

    assert after_recent == recent
    assert after_stale is not None
    assert after_stale > stale + timedelta(minutes=1)


def test_api_key_cannot_grant_the_owner_role(
    owner: User, member: User, workspace_a: Workspace
) -> None:
    key = create_key(owner, "alpha", ["members.view", "members.manage", "members.invite"])
    client = key_client(key["key"])
    target = membership_id(member, workspace_a)

    promote = client.patch(f"{MEMBERS}{target}/", {"role": "owner"}, format="json")
    invite = client.post(
        INVITATIONS, {"email": "boss@example.test", "role": "owner"}, format="json"
    )

    for response in (promote, invite):
        assert response.status_code == 403
        assert error_of(response)["code"] == "permission_denied"
    assert Membership.objects.get(pk=target).role == Role.MEMBER
    assert not Invitation.objects.filter(email="boss@example.test").exists()


def test_api_key_cannot_change_or_remove_an_owner(owner: User, workspace_a: Workspace) -> None:
    key = create_key(owner, "alpha", ["members.view", "members.manage"])
    client = key_client(key["key"])
    target = membership_id(owner, workspace_a)

    demote = client.patch(f"{MEMBERS}{target}/", {"role": "viewer"}, format="json")
    remove = client.delete(f"{MEMBERS}{target}/")

    for response in (demote, remove):
        assert response.status_code == 403
        assert error_of(response)["code"] == "permission_denied"
    assert Membership.objects.get(pk=target).role == Role.OWNER


def test_api_key_actions_are_audited_under_the_key(
    owner: User, member: User, workspace_a: Workspace
) -> None:
    key = create_key(owner, "alpha", ["members.view", "members.manage", "workspace.view"])
    target = membership_id(member, workspace_a)

    response = key_client(key["key"]).patch(
        f"{MEMBERS}{target}/", {"role": "viewer"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["role"] == "viewer"
    events = (
        session_client(owner)
        .get(AUDIT, {"action": "member.role_changed"}, HTTP_X_WORKSPACE="alpha")
        .json()["results"]
    )
    assert [(e["actor"], e["target_id"]) for e in events] == [
        (f"API key {key['prefix']}", str(target))
    ]


# --- bad keys ------------------------------------------------------------------------------


def test_revoked_key_is_refused(owner: User) -> None:
    key = create_key(owner, "alpha", ["members.view"])
    client = key_client(key["key"])
    assert client.get(MEMBERS).status_code == 200

    revoke = session_client(owner).delete(f"{API_KEYS}{key['id']}/", HTTP_X_WORKSPACE="alpha")
    response = client.get(MEMBERS)

    assert revoke.status_code == 204
    assert ApiKey.objects.get(pk=key["id"]).revoked_at is not None
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "authentication_failed"
    assert "revoked" in error["message"]


def test_expired_key_is_refused(owner: User) -> None:
    key = create_key(owner, "alpha", ["members.view"])
    ApiKey.objects.filter(pk=key["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = key_client(key["key"]).get(MEMBERS)

    assert response.status_code == 401
    assert "expired" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("authorization", "message_part"),
    [
        ("Bearer nonsense", "Malformed"),
        ("Bearer amk_deadbeef_xxx", "Unknown"),
        ("Bearer", "Malformed"),
        ("Bearer amk_a amk_b", "Malformed"),
    ],
)
def test_bad_bearer_tokens_get_401_with_envelope(
    world: World, authorization: str, message_part: str
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)

    response = client.get(MEMBERS)

    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "authentication_failed"
    assert message_part in error["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_key_does_not_fall_back_to_the_session(owner: User) -> None:
    client = session_client(owner)
    client.credentials(HTTP_AUTHORIZATION="Bearer amk_deadbeef_xxx")

    response = client.get(MEMBERS, HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 401
    assert "owner@alpha.test" not in response.content.decode()


# --- the outsider's own key ---------------------------------------------------------------


def test_outsider_key_cannot_reach_alpha_members(
    outsider: User, owner: User, member: User, workspace_a: Workspace
) -> None:
    key = create_key(outsider, "bravo", ["members.view", "members.manage"])
    client = key_client(key["key"])
    target = membership_id(member, workspace_a)

    read = client.get(f"{MEMBERS}{target}/")
    change = client.patch(f"{MEMBERS}{target}/", {"role": "viewer"}, format="json")
    remove = client.delete(f"{MEMBERS}{target}/")
    listed = client.get(MEMBERS, HTTP_X_WORKSPACE="alpha")

    for response in (read, change, remove):
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"
        assert "member@alpha.test" not in response.content.decode()
    assert Membership.objects.get(pk=target).role == Role.MEMBER
    assert listed.status_code == 200
    assert emails_of(listed.json()) == {"outsider@bravo.test"}


def test_owner_cannot_revoke_another_workspaces_key(owner: User, outsider: User) -> None:
    bravo_key = create_key(outsider, "bravo", ["members.view"])

    response = session_client(owner).delete(
        f"{API_KEYS}{bravo_key['id']}/", HTTP_X_WORKSPACE="alpha"
    )

    assert response.status_code == 404
    assert ApiKey.objects.get(pk=bravo_key["id"]).revoked_at is None


# --- workspace detail ----------------------------------------------------------------------


def test_owner_renames_workspace(owner: User, workspace_a: Workspace) -> None:
    response = session_client(owner).patch(
        WORKSPACE, {"name": "Alpha Renamed"}, format="json", HTTP_X_WORKSPACE="alpha"
    )

    assert response.status_code == 200
    assert response.json()["name"] == "Alpha Renamed"
    assert response.json()["slug"] == "alpha"
    workspace_a.refresh_from_db()
    assert workspace_a.name == "Alpha Renamed"


def test_member_cannot_rename_workspace(member: User, workspace_a: Workspace) -> None:
    response = session_client(member).patch(
        WORKSPACE, {"name": "Hijacked"}, format="json", HTTP_X_WORKSPACE="alpha"
    )

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    workspace_a.refresh_from_db()
    assert workspace_a.name == "Alpha Inc"


def test_outsider_cannot_rename_alpha(outsider: User, workspace_a: Workspace) -> None:
    response = session_client(outsider).patch(
        WORKSPACE, {"name": "Pwned"}, format="json", HTTP_X_WORKSPACE="alpha"
    )

    assert response.status_code == 404
    workspace_a.refresh_from_db()
    assert workspace_a.name == "Alpha Inc"


# --- members -------------------------------------------------------------------------------


def test_owner_reads_one_member(owner: User, member: User, workspace_a: Workspace) -> None:
    target = membership_id(member, workspace_a)

    response = session_client(owner).get(f"{MEMBERS}{target}/", HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == target
    assert body["email"] == "member@alpha.test"
    assert body["role"] == "member"


def test_owner_promotes_member_to_admin(owner: User, member: User, workspace_a: Workspace) -> None:
    target = membership_id(member, workspace_a)

    response = session_client(owner).patch(
        f"{MEMBERS}{target}/", {"role": "admin"}, format="json", HTTP_X_WORKSPACE="alpha"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["role"] == "admin"
    assert body["email"] == "member@alpha.test"
    assert Membership.objects.get(pk=target).role == Role.ADMIN
    assert AuditEvent.objects.filter(
        workspace=workspace_a, action="member.role_changed", target_id=str(target)
    ).exists()


def test_demoting_the_last_owner_is_a_conflict(owner: User, workspace_a: Workspace) -> None:
    target = membership_id(owner, workspace_a)

    response = session_client(owner).patch(
        f"{MEMBERS}{target}/", {"role": "admin"}, format="json", HTTP_X_WORKSPACE="alpha"
    )

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "conflict"
    assert "owner" in error["message"]
    assert Membership.objects.get(pk=target).role == Role.OWNER


def test_member_cannot_change_roles(owner: User, member: User, workspace_a: Workspace) -> None:
    client = session_client(member)

    others = client.patch(
        f"{MEMBERS}{membership_id(owner, workspace_a)}/",
        {"role": "viewer"},
        format="json",
        HTTP_X_WORKSPACE="alpha",
    )
    own = client.patch(
        f"{MEMBERS}{membership_id(member, workspace_a)}/",
        {"role": "owner"},
        format="json",
        HTTP_X_WORKSPACE="alpha",
    )

    for response in (others, own):
        assert response.status_code == 403
        assert error_of(response)["code"] == "permission_denied"
    assert Membership.objects.get(user=owner, workspace=workspace_a).role == Role.OWNER
    assert Membership.objects.get(user=member, workspace=workspace_a).role == Role.MEMBER


def test_invalid_role_names_the_role_field(
    owner: User, member: User, workspace_a: Workspace
) -> None:
    response = session_client(owner).patch(
        f"{MEMBERS}{membership_id(member, workspace_a)}/",
        {"role": "superuser"},
        format="json",
        HTTP_X_WORKSPACE="alpha",
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert error["fields"]["role"]


def test_owner_removes_member(owner: User, member: User, workspace_a: Workspace) -> None:
    client = session_client(owner)
    target = membership_id(member, workspace_a)

    response = client.delete(f"{MEMBERS}{target}/", HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 204
    assert response.content == b""
    assert not Membership.objects.filter(pk=target).exists()
    again = client.get(f"{MEMBERS}{target}/", HTTP_X_WORKSPACE="alpha")
    assert again.status_code == 404
    assert emails_of(client.get(MEMBERS, HTTP_X_WORKSPACE="alpha").json()) == {"owner@alpha.test"}
    # The removed member no longer reaches the workspace at all.
    gone = session_client(member).get(MEMBERS, HTTP_X_WORKSPACE="alpha")
    assert gone.status_code == 404


def test_admin_cannot_touch_owners_or_grant_owner(
    owner: User, member: User, workspace_a: Workspace
) -> None:
    # Given the member promoted to admin
    Membership.objects.filter(user=member, workspace=workspace_a).update(role=Role.ADMIN)
    admin = session_client(member)
    owner_id = membership_id(owner, workspace_a)
    self_id = membership_id(member, workspace_a)

    # When the admin tries to demote the owner, or make themselves owner
    demote = admin.patch(
        f"{MEMBERS}{owner_id}/", {"role": "admin"}, format="json", HTTP_X_WORKSPACE="alpha"
    )
    promote = admin.patch(
        f"{MEMBERS}{self_id}/", {"role": "owner"}, format="json", HTTP_X_WORKSPACE="alpha"
    )

    # Then both are refused and nothing changed
    for response in (demote, promote):
        assert response.status_code == 403
        assert error_of(response)["code"] == "permission_denied"
    assert Membership.objects.get(pk=owner_id).role == Role.OWNER
    assert Membership.objects.get(pk=self_id).role == Role.ADMIN


def test_member_cannot_remove_owner(owner: User, member: User, workspace_a: Workspace) -> None:
    target = membership_id(owner, workspace_a)

    response = session_client(member).delete(f"{MEMBERS}{target}/", HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert Membership.objects.filter(pk=target).exists()


def test_last_owner_cannot_leave(owner: User, workspace_a: Workspace) -> None:
    target = membership_id(owner, workspace_a)

    response = session_client(owner).delete(f"{MEMBERS}{target}/", HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 409
    assert error_of(response)["code"] == "conflict"
    assert Membership.objects.filter(pk=target).exists()


def test_member_can_leave(member: User, workspace_a: Workspace) -> None:
    target = membership_id(member, workspace_a)

    response = session_client(member).delete(f"{MEMBERS}{target}/", HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 204
    assert not Membership.objects.filter(pk=target).exists()


# --- invitations --------------------------------------------------------------------------


def test_owner_invites_by_email_and_mail_is_sent(
    owner: User, workspace_a: Workspace, django_capture_on_commit_callbacks: Any
) -> None:
    client = session_client(owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            INVITATIONS,
            {"email": "New@Example.test", "role": "viewer"},
            format="json",
            HTTP_X_WORKSPACE="alpha",
        )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["email"] == "new@example.test"
    assert body["role"] == "viewer"
    assert body["invited_by"] == "owner@alpha.test"
    assert Invitation.objects.get(pk=body["id"]).workspace_id == workspace_a.pk
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new@example.test"]
    assert "Alpha Inc" in message.subject
    assert re.search(r"https?://\S+/invitations/\S+/", message.body)
    pending = client.get(INVITATIONS, HTTP_X_WORKSPACE="alpha")
    assert pending.status_code == 200
    assert [row["email"] for row in pending.json()["results"]] == ["new@example.test"]


def test_reinviting_after_the_invitation_expired_sends_a_new_one(
    owner: User, django_capture_on_commit_callbacks: Any
) -> None:
    # Given an invitation that expired unanswered (accepting it says "Ask for a new one.")
    client = session_client(owner)
    payload = {"email": "late@example.test", "role": "viewer"}
    first = client.post(INVITATIONS, payload, format="json", HTTP_X_WORKSPACE="alpha").json()
    Invitation.objects.filter(pk=first["id"]).update(expires_at=timezone.now() - timedelta(days=1))

    # When the owner invites the same address again
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(INVITATIONS, payload, format="json", HTTP_X_WORKSPACE="alpha")

    # Then a new invitation is made and mailed
    assert again.status_code == 201, again.content
    assert again.json()["id"] != first["id"]
    assert [m.to for m in mail.outbox] == [["late@example.test"]]


def test_inviting_an_existing_member_is_a_conflict(
    owner: User, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = session_client(owner).post(
            INVITATIONS,
            {"email": "member@alpha.test", "role": "viewer"},
            format="json",
            HTTP_X_WORKSPACE="alpha",
        )

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "conflict"
    assert error["fields"]["email"]
    assert mail.outbox == []


def test_duplicate_pending_invitation_is_a_conflict(
    owner: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = session_client(owner)
    payload = {"email": "twice@example.test", "role": "viewer"}

    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(INVITATIONS, payload, format="json", HTTP_X_WORKSPACE="alpha")
        second = client.post(
            INVITATIONS,
            {**payload, "email": "TWICE@example.test"},
            format="json",
            HTTP_X_WORKSPACE="alpha",
        )

    assert first.status_code == 201
    assert second.status_code == 409
    error = error_of(second)
    assert error["code"] == "conflict"
    assert error["fields"]["email"]
    assert Invitation.objects.filter(email="twice@example.test").count() == 1
    assert len(mail.outbox) == 1


def test_invalid_invitation_email_names_the_field(owner: User) -> None:
    response = session_client(owner).post(
        INVITATIONS, {"email": "not-an-email"}, format="json", HTTP_X_WORKSPACE="alpha"
    )

    assert response.status_code == 400
    assert error_of(response)["fields"]["email"]


def test_member_cannot_invite(member: User) -> None:
    response = session_client(member).post(
        INVITATIONS, {"email": "x@example.test"}, format="json", HTTP_X_WORKSPACE="alpha"
    )

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert not Invitation.objects.exists()


def test_owner_revokes_invitation(owner: User) -> None:
    client = session_client(owner)
    invitation = client.post(
        INVITATIONS,
        {"email": "bye@example.test", "role": "viewer"},
        format="json",
        HTTP_X_WORKSPACE="alpha",
    ).json()

    response = client.delete(f"{INVITATIONS}{invitation['id']}/", HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 204
    assert Invitation.objects.get(pk=invitation["id"]).revoked_at is not None
    assert client.get(INVITATIONS, HTTP_X_WORKSPACE="alpha").json()["count"] == 0
    again = client.delete(f"{INVITATIONS}{invitation['id']}/", HTTP_X_WORKSPACE="alpha")
    assert again.status_code == 404


# --- audit ---------------------------------------------------------------------------------


def test_owner_sees_api_key_created_event(owner: User) -> None:
    key = create_key(owner, "alpha", ["members.view"])

    response = session_client(owner).get(AUDIT, HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 200
    events = response.json()["results"]
    created = [e for e in events if e["action"] == "api_key.created"]
    assert len(created) == 1
    assert created[0]["actor"] == "owner@alpha.test"
    assert created[0]["target_id"] == str(key["id"])
    assert key["key"] not in response.content.decode()


def test_audit_events_filter_by_action(owner: User) -> None:
    create_key(owner, "alpha", ["members.view"])

    response = session_client(owner).get(
        AUDIT, {"action": "api_key.created"}, HTTP_X_WORKSPACE="alpha"
    )

    assert response.status_code == 200
    assert {e["action"] for e in response.json()["results"]} == {"api_key.created"}


def test_member_cannot_read_audit_log(member: User) -> None:
    response = session_client(member).get(AUDIT, HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"


def test_outsider_key_never_sees_alpha_events(
    owner: User, outsider: User, workspace_a: Workspace, workspace_b: Workspace
) -> None:
    # Given activity in alpha and an outsider key for bravo allowed to read the audit log
    alpha_key = create_key(owner, "alpha", ["members.view"])
    bravo_key = create_key(outsider, "bravo", ["audit.view"])

    # When the outsider reads the audit log, even naming alpha in the header
    response = key_client(bravo_key["key"]).get(AUDIT, {"limit": 100}, HTTP_X_WORKSPACE="alpha")

    # Then only bravo's events come back
    assert response.status_code == 200
    seen = {e["id"] for e in response.json()["results"]}
    alpha_ids = set(AuditEvent.objects.filter(workspace=workspace_a).values_list("id", flat=True))
    bravo_ids = set(AuditEvent.objects.filter(workspace=workspace_b).values_list("id", flat=True))
    # plus the account events (sign-ins) of bravo's own member, which carry no workspace
    bravo_ids |= set(
        AuditEvent.objects.filter(workspace=None, actor=outsider).values_list("id", flat=True)
    )
    assert seen == bravo_ids
    assert not seen & alpha_ids
    text = response.content.decode()
    assert "owner@alpha.test" not in text
    assert alpha_key["prefix"] not in text


# --- throttling ----------------------------------------------------------------------------


@pytest.fixture
def tight_rates(settings: Any) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_key": "3/min", "user": "3/min"},
    }
    cache.clear()


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 0 < retry_after <= 60
    error = error_of(response)
    assert error["code"] == "throttled"
    assert "Try again in" in error["message"]


def test_api_key_is_throttled_per_key(owner: User, settings: Any) -> None:
    # Given two keys, created before the tight rates apply
    first = key_client(create_key(owner, "alpha", ["members.view"], name="first")["key"])
    second = key_client(create_key(owner, "alpha", ["members.view"], name="second")["key"])
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_key": "3/min", "user": "3/min"},
    }
    cache.clear()

    # When the first key uses up its rate
    allowed = [first.get(MEMBERS).status_code for _ in range(3)]
    fourth = first.get(MEMBERS)

    # Then its fourth call is refused, and the other key is untouched
    assert allowed == [200, 200, 200]
    assert_throttled(fourth)
    assert second.get(MEMBERS).status_code == 200


def test_session_user_is_throttled_per_user(owner: User, member: User, tight_rates: None) -> None:
    owner_client = session_client(owner)

    allowed = [owner_client.get(MEMBERS, HTTP_X_WORKSPACE="alpha").status_code for _ in range(3)]
    fourth = owner_client.get(MEMBERS, HTTP_X_WORKSPACE="alpha")
    other = session_client(member).get(MEMBERS, HTTP_X_WORKSPACE="alpha")

    assert allowed == [200, 200, 200]
    assert_throttled(fourth)
    assert other.status_code == 200
    # A second session of the same person shares the budget.
    assert_throttled(session_client(owner).get(MEMBERS, HTTP_X_WORKSPACE="alpha"))


def test_key_usage_does_not_spend_the_session_budget(owner: User, settings: Any) -> None:
    key = key_client(create_key(owner, "alpha", ["members.view"])["key"])
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_key": "3/min", "user": "3/min"},
    }
    cache.clear()

    for _ in range(3):
        assert key.get(MEMBERS).status_code == 200

    assert session_client(owner).get(MEMBERS, HTTP_X_WORKSPACE="alpha").status_code == 200


# --- other errors keep the envelope ------------------------------------------------------


def test_wrong_method_gets_405_with_envelope(owner: User) -> None:
    response = session_client(owner).put(MEMBERS, {}, format="json", HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_malformed_json_gets_400_with_envelope(owner: User) -> None:
    response = session_client(owner).post(
        API_KEYS, "{not json", content_type="application/json", HTTP_X_WORKSPACE="alpha"
    )

    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"
    assert not ApiKey.objects.exists()


def test_unknown_member_id_is_404_with_envelope(owner: User) -> None:
    response = session_client(owner).get(f"{MEMBERS}999999999/", HTTP_X_WORKSPACE="alpha")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# --- anonymous -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", WORKSPACES),
        ("post", WORKSPACES),
        ("get", WORKSPACE),
        ("get", MEMBERS),
        ("get", f"{MEMBERS}1/"),
        ("get", INVITATIONS),
        ("post", API_KEYS),
        ("get", API_KEYS),
        ("get", AUDIT),
    ],
)
def test_anonymous_calls_are_refused_with_envelope(world: World, method: str, path: str) -> None:
    response = getattr(APIClient(), method)(path, HTTP_X_WORKSPACE="alpha")

    assert response.status_code in {401, 403}
    error = error_of(response)
    assert error["code"] == "not_authenticated"
    assert "alpha.test" not in response.content.decode()
