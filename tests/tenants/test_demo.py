from __future__ import annotations

import os
from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import User
from tenants.models import Membership, Workspace

pytestmark = pytest.mark.django_db


def _counts() -> tuple[int, int, int]:
    return User.objects.count(), Workspace.objects.count(), Membership.objects.count()


def test_demo_seed_is_idempotent_and_prints_the_logins() -> None:
    first = StringIO()
    call_command("seed_demo", stdout=first)
    after_first = _counts()
    second = StringIO()
    call_command("seed_demo", stdout=second)

    assert _counts() == after_first
    assert "already there" in second.getvalue()
    for email in ("admin@demo.local", "owner@demo.local", "member@demo.local"):
        assert email in first.getvalue()
    demo = Workspace.objects.get(slug="demo")
    roles = dict(Membership.objects.filter(workspace=demo).values_list("user__email", "role"))
    assert roles == {"owner@demo.local": "owner", "member@demo.local": "member"}
    assert User.objects.get(email="admin@demo.local").is_staff


def test_demo_users_can_sign_in_with_the_printed_password(client) -> None:
    call_command("seed_demo", stdout=StringIO())
    response = client.post(
        "/accounts/login/",
        {
            "login": "owner@demo.local",
            "password": os.environ.get("DEMO_PASSWORD", "demo-password-2026"),
        },
    )
    assert response.status_code == 302
    assert client.get("/go/")["Location"] == "/w/demo/"
