from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from accounts.models import User
from tenants import audit
from tenants.models import AuditEvent
from tests.helpers.personas import PASSWORD

pytestmark = pytest.mark.django_db


def _confirmation_link() -> str:
    match = re.search(r"http://[^/\s]+(/accounts/confirm-email/[^\s]+/)", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(1)


def test_sign_up_confirm_and_land_on_workspace_creation(client: Client) -> None:
    response = client.post(
        "/accounts/signup/",
        {
            "email": "Newcomer@Example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302
    assert "confirm-email" in response["Location"]
    assert User.objects.filter(email__iexact="newcomer@example.com").exists()

    response = client.get(_confirmation_link(), follow=True)

    # Confirmed and signed in; with no workspace yet the user is asked to create one.
    assert response.redirect_chain[-1][0] == "/workspaces/new/"
    assert response.wsgi_request.user.is_authenticated


def test_unconfirmed_user_cannot_sign_in(client: Client) -> None:
    client.post(
        "/accounts/signup/",
        {
            "email": "pending@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    other = Client()
    response = other.post(
        "/accounts/login/", {"login": "pending@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert "confirm-email" in response["Location"]
    assert other.get("/workspaces/").status_code == 302  # still anonymous


def test_duplicate_email_creates_no_account_and_warns_the_owner_by_mail(
    client: Client, owner: User
) -> None:
    # allauth's enumeration protection: the form does not reveal that the address is taken;
    # the address's owner is told by email instead.
    response = client.post(
        "/accounts/signup/",
        {
            "email": "OWNER@alpha.test",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302
    assert User.objects.filter(email__iexact="owner@alpha.test").count() == 1
    assert mail.outbox[-1].to == ["owner@alpha.test"]
    assert "already" in (mail.outbox[-1].subject + mail.outbox[-1].body).lower()


def test_weak_and_mismatched_passwords_are_explained(client: Client) -> None:
    response = client.post(
        "/accounts/signup/",
        {
            "email": "weak@example.com",
            "password1": "123",
            "password2": "123",
        },
    )
    assert "too short" in str(response.context["form"].errors).lower()
    response = client.post(
        "/accounts/signup/",
        {
            "email": "mismatch@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD + "x",
        },
    )
    assert "same password" in str(response.context["form"].errors).lower()


def test_sign_in_and_failed_sign_in_are_audited_with_the_ip(client: Client, owner: User) -> None:
    client.post(
        "/accounts/login/",
        {"login": "owner@alpha.test", "password": "wrong"},
        REMOTE_ADDR="203.0.113.9",
    )
    client.post(
        "/accounts/login/",
        {"login": "owner@alpha.test", "password": PASSWORD},
        REMOTE_ADDR="203.0.113.9",
    )

    failed = AuditEvent.objects.get(action=audit.Action.SIGN_IN_FAILED)
    signed_in = AuditEvent.objects.get(action=audit.Action.SIGN_IN)
    assert failed.target_label == "owner@alpha.test"
    assert failed.actor is None
    assert signed_in.actor == owner
    assert signed_in.ip_address == "203.0.113.9"
    assert signed_in.request_id  # ties the event to the request's log lines


def test_forwarded_for_is_trusted_only_behind_configured_proxies(
    client: Client, owner: User, settings
) -> None:
    client.post(
        "/accounts/login/",
        {"login": "owner@alpha.test", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="198.51.100.7",
    )
    assert AuditEvent.objects.get(action=audit.Action.SIGN_IN).ip_address == "10.0.0.2"

    settings.TRUSTED_PROXY_COUNT = 1
    Client().post(
        "/accounts/login/",
        {"login": "owner@alpha.test", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="198.51.100.7",
    )
    latest = AuditEvent.objects.filter(action=audit.Action.SIGN_IN).first()
    assert latest is not None
    assert latest.ip_address == "198.51.100.7"
