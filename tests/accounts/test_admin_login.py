"""The back-office sign-in is allauth's: /admin/login/ never checks a password itself, so the
failed-attempt limits of allauth apply to staff accounts too."""

from __future__ import annotations

import secrets

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from tests.helpers.personas import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> User:
    user = make_user(f"staff-{secrets.token_hex(4)}@example.com", password="right-horse-42")
    user.is_staff = user.is_superuser = True
    user.save(update_fields=["is_staff", "is_superuser"])
    return user


def _client() -> Client:
    # An address of its own, so allauth's per-address limit counts this test alone.
    return Client(REMOTE_ADDR=f"203.0.113.{secrets.randbelow(250) + 1}")


def test_admin_login_sends_to_allauth_and_keeps_next() -> None:
    response = _client().get("/admin/login/?next=/admin/marketplace/flag/")
    assert response.status_code == 302
    assert (
        response["Location"] == reverse("account_login") + "?next=%2Fadmin%2Fmarketplace%2Fflag%2F"
    )


def test_the_admin_itself_sends_anonymous_visitors_to_allauth() -> None:
    response = _client().get("/admin/", follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("account_login"))
    assert response.status_code == 200


def test_admin_login_never_checks_a_password(staff: User) -> None:
    client = _client()
    response = client.post(
        "/admin/login/?next=/admin/", {"username": staff.email, "password": "right-horse-42"}
    )
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
    assert "_auth_user_id" not in client.session


def test_an_offsite_next_is_dropped() -> None:
    response = _client().get("/admin/login/?next=https://evil.example/")
    assert response["Location"] == reverse("account_login") + "?next=%2Fadmin%2F"


def test_repeated_failures_lock_the_staff_account_out_for_a_while(staff: User) -> None:
    client = _client()
    url = reverse("account_login") + "?next=/admin/"
    for _ in range(5):
        failed = client.post(url, {"login": staff.email, "password": "wrong-guess"})
        assert failed.status_code == 200
        assert "_auth_user_id" not in client.session

    # The right password is refused too until the limit's window has passed.
    limited = client.post(url, {"login": staff.email, "password": "right-horse-42"})
    assert "Too many failed login attempts" in limited.content.decode()
    assert "_auth_user_id" not in client.session


def test_staff_reach_the_admin_after_signing_in_through_allauth(staff: User) -> None:
    client = _client()
    signed_in = client.post(
        reverse("account_login") + "?next=/admin/",
        {"login": staff.email, "password": "right-horse-42"},
    )
    assert signed_in.status_code == 302
    assert signed_in["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/login/?next=/admin/").headers["Location"] == "/admin/"


def test_a_signed_in_non_staff_user_is_refused_not_bounced() -> None:
    client = _client()
    client.force_login(make_user(f"member-{secrets.token_hex(4)}@example.com"))
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 403
    assert "not a staff account" in response.content.decode()
