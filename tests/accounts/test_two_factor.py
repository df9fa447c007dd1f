"""Two-factor sign-in (allauth.mfa, docs/sso.md): TOTP set up from the account pages, asked at
every sign-in, recovery codes that work once, a workspace that requires it of its members, and
staff who need it for /admin/ when `STAFF_REQUIRE_MFA` is on (production)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.test import Client
from django.urls import reverse

from accounts.models import User
from tenants.models import Membership, Role, WorkspaceSignIn
from tests.helpers.personas import PASSWORD, World, key_client, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _one_step_of_clock_tolerance(settings: Any) -> None:
    # A code computed just before a 30-second boundary is checked just after it.
    settings.MFA_TOTP_TOLERANCE = 1


def totp_code(secret: str, *, step: int = 0) -> str:
    counter = int(time.time()) // 30 + step
    return format_hotp_value(hotp_value(secret, counter))


def password_sign_in(email: str) -> tuple[Client, Any]:
    client = Client()
    response = client.post(reverse("account_login"), {"login": email, "password": PASSWORD})
    return client, response


def enable_totp(user: User) -> str:
    """Turn TOTP on from the account pages, as the person would; returns the secret."""
    client, _ = password_sign_in(user.email)
    # allauth asks for the password again before a security change.
    assert client.get(reverse("mfa_activate_totp"))["Location"].startswith(
        reverse("account_reauthenticate")
    )
    client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200
    secret = page.context["form"].secret
    response = client.post(reverse("mfa_activate_totp"), {"code": totp_code(secret)})
    assert response.status_code == 302, response.content.decode()
    assert response["Location"] == reverse("mfa_view_recovery_codes")
    return str(secret)


def test_turning_on_totp_then_sign_in_asks_for_the_code(world: World) -> None:
    secret = enable_totp(world.member)
    totp = Authenticator.objects.get(user=world.member, type=Authenticator.Type.TOTP)
    assert secret not in str(totp.data)  # encrypted at rest (accounts.adapter.MfaAdapter)

    client, response = password_sign_in(world.member.email)
    assert response["Location"] == reverse("mfa_authenticate")
    assert client.get("/w/alpha/").status_code == 302  # not signed in yet

    wrong = client.post(reverse("mfa_authenticate"), {"code": "000000"})
    assert wrong.status_code == 200
    assert "Incorrect code" in wrong.content.decode()
    done = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret, step=1)})
    assert done.status_code == 302
    assert client.get("/w/alpha/").status_code == 200


def test_a_totp_code_is_accepted_once(world: World) -> None:
    secret = enable_totp(world.member)
    code = totp_code(secret)
    first, _ = password_sign_in(world.member.email)
    assert first.post(reverse("mfa_authenticate"), {"code": code}).status_code == 302
    second, _ = password_sign_in(world.member.email)
    assert second.post(reverse("mfa_authenticate"), {"code": code}).status_code == 200
    assert second.get("/w/alpha/").status_code == 302


def test_a_recovery_code_signs_in_once(world: World) -> None:
    enable_totp(world.member)
    recovery = Authenticator.objects.get(user=world.member, type=Authenticator.Type.RECOVERY_CODES)
    code = RecoveryCodes(recovery).get_unused_codes()[0]

    client, _ = password_sign_in(world.member.email)
    assert client.post(reverse("mfa_authenticate"), {"code": code}).status_code == 302
    assert client.get("/w/alpha/").status_code == 200

    again, _ = password_sign_in(world.member.email)
    assert again.post(reverse("mfa_authenticate"), {"code": code}).status_code == 200
    assert again.get("/w/alpha/").status_code == 302


def test_a_workspace_requiring_two_factor_sends_members_without_it_to_set_it_up(
    world: World,
) -> None:
    WorkspaceSignIn.objects.create(workspace=world.workspace_a, mfa_required=True)
    client, _ = password_sign_in(world.member.email)

    page = client.get("/w/alpha/agents/")
    assert page.status_code == 302
    assert page["Location"].startswith(reverse("mfa_activate_totp"))
    api = client.get("/api/v1/workspace/", HTTP_X_WORKSPACE="alpha")
    assert api.status_code == 403
    assert "two-factor" in api.content.decode()
    # API keys are not sessions: unaffected.
    assert key_client(world, ["workspace.view"]).get("/api/v1/workspace/").status_code == 200
    # Other workspaces are not affected either.
    Membership.objects.create(user=world.member, workspace=world.workspace_b, role=Role.VIEWER)
    assert client.get("/w/bravo/").status_code == 200

    # Set up in the same session: the recovery codes page leads back to the workspace.
    client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    setup = client.get(reverse("mfa_activate_totp"))
    codes = client.post(
        reverse("mfa_activate_totp"), {"code": totp_code(setup.context["form"].secret)}, follow=True
    )
    assert 'href="/w/alpha/agents/"' in codes.content.decode()
    assert client.get("/w/alpha/agents/").status_code == 200
    assert client.get("/api/v1/workspace/", HTTP_X_WORKSPACE="alpha").status_code == 200


def test_the_owner_turns_the_requirement_on_from_the_sign_in_page(world: World) -> None:
    client, _ = password_sign_in(world.owner.email)
    response = client.post(
        reverse("sign_in_policy", kwargs={"workspace_slug": "alpha"}), {"mfa_required": "on"}
    )
    assert response.status_code == 302
    assert WorkspaceSignIn.objects.get(workspace=world.workspace_a).mfa_required
    # The owner has no two-factor yet either: they are sent to set it up too.
    assert client.get("/w/alpha/")["Location"].startswith(reverse("mfa_activate_totp"))


@pytest.fixture
def staff(world: World) -> User:
    user = make_user("ops@platform.test")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


def test_staff_need_two_factor_for_the_back_office_when_required(
    staff: User, settings: Any
) -> None:
    settings.STAFF_REQUIRE_MFA = True
    client, _ = password_sign_in(staff.email)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("mfa_activate_totp"))

    secret = enable_totp(staff)
    client, _ = password_sign_in(staff.email)
    client.post(reverse("mfa_authenticate"), {"code": totp_code(secret, step=1)})
    assert client.get("/admin/").status_code == 200


def test_staff_without_two_factor_open_the_back_office_where_not_required(
    staff: User, settings: Any
) -> None:
    settings.STAFF_REQUIRE_MFA = False
    client, _ = password_sign_in(staff.email)
    assert client.get("/admin/").status_code == 200


def test_production_settings_require_two_factor_for_staff() -> None:
    from pathlib import Path

    source = Path("config/settings/production.py").read_text()
    assert 'STAFF_REQUIRE_MFA = env.bool("STAFF_REQUIRE_MFA", default=True)' in source


@pytest.mark.parametrize("name", ["mfa_index", "mfa_activate_totp", "mfa_view_recovery_codes"])
def test_two_factor_pages_send_anonymous_visitors_to_sign_in(name: str, world: World) -> None:
    response = Client().get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
