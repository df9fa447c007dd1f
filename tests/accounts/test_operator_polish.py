"""What operators and invited users see first: emails signed with the product's name (not
the host), invitation links on the address the dev server really serves, staff landing in
the back-office, and a back-office index without dj-stripe's unused models."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import User
from config.management.commands.dev import child_environment
from tests.helpers.personas import PASSWORD, World

pytestmark = pytest.mark.django_db


def test_dev_port_reaches_the_site_url_of_the_server_and_worker(monkeypatch: Any) -> None:
    monkeypatch.delenv("SITE_URL", raising=False)
    env = child_environment({"REDIS_URL": "unix:///x"}, host="127.0.0.1", port=8123)
    assert env["SITE_URL"] == "http://localhost:8123"
    assert env["REDIS_URL"] == "unix:///x"
    # an explicit SITE_URL (a tunnel, a proxy) wins
    monkeypatch.setenv("SITE_URL", "https://agents.example.com")
    env = child_environment({}, host="0.0.0.0", port=8123)  # noqa: S104
    assert env["SITE_URL"] == "https://agents.example.com"


def test_invitation_link_uses_the_site_url_and_the_mail_is_signed_with_the_product(
    world: World, owner_client: Client, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.SITE_URL = "http://localhost:8123"
    settings.PRODUCT_NAME = "Agent Market"
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(
            reverse("member_invite", kwargs={"workspace_slug": "alpha"}),
            {"email": "newcomer@example.com", "role": "member"},
        )
    assert response.status_code == 302
    (message,) = mail.outbox
    assert message.subject == "[Agent Market] You're invited to Alpha Inc"
    assert "http://localhost:8123/invitations/" in message.body
    assert "localhost:8000" not in message.body
    assert message.body.rstrip().endswith("— Agent Market\nhttp://localhost:8123/")


def test_account_emails_are_signed_with_the_product_name_not_the_host(
    settings: Any, world: World
) -> None:
    settings.SITE_URL = "https://agents.example.com"
    response = Client().post(
        reverse("account_signup"),
        {"email": "fresh@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    (message,) = mail.outbox
    assert message.subject.startswith("[Agent Market] ")
    assert "Hello from Agent Market!" in message.body
    assert "Thank you for using Agent Market!" in message.body
    assert "testserver" not in message.subject
    assert "Hello from testserver" not in message.body


def test_staff_without_a_workspace_land_in_the_back_office(world: World) -> None:
    staff = User.objects.create_user(email="ops@platform.test", password=PASSWORD, is_staff=True)
    EmailAddress.objects.create(user=staff, email=staff.email, verified=True, primary=True)
    response = Client().post(
        reverse("account_login"), {"login": staff.email, "password": PASSWORD}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("admin:index")
    assert response.status_code == 200


def test_a_user_without_a_workspace_is_still_asked_to_create_one(world: World) -> None:
    user = User.objects.create_user(email="new@example.com", password=PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    client = Client()
    client.force_login(user)
    assert client.get(reverse("workspace_home_redirect")).url == reverse("workspace_create")


def test_admin_index_lists_no_djstripe_models(world: World) -> None:
    admin = User.objects.create_superuser(email="root@platform.test", password=PASSWORD)
    client = Client()
    client.force_login(admin)
    html = client.get(reverse("admin:index")).content.decode()
    assert "/admin/djstripe/" not in html
    assert "/admin/billing/modelprice/" in html  # our own billing admin stays
