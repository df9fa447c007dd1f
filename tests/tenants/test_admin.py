from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from tenants.models import Workspace
from tests.helpers.personas import logged_in

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "admin:tenants_workspace_changelist",
    "admin:tenants_domain_changelist",
    "admin:tenants_membership_changelist",
    "admin:tenants_invitation_changelist",
    "admin:tenants_apikey_changelist",
    "admin:tenants_auditevent_changelist",
    "admin:accounts_user_changelist",
]


@pytest.fixture
def staff_client(world) -> Client:
    staff = User.objects.create_superuser(email="staff@platform.test", password="x")
    return logged_in(staff)


@pytest.mark.parametrize("name", CHANGELISTS)
def test_staff_can_search_every_back_office_list(staff_client: Client, name: str) -> None:
    response = staff_client.get(reverse(name), {"q": "alpha"})
    assert response.status_code == 200


def test_workspace_list_shows_member_counts_and_hides_nothing_it_should_not(
    staff_client: Client,
) -> None:
    response = staff_client.get(reverse("admin:tenants_workspace_changelist"), {"q": "alpha"})
    html = response.content.decode()
    assert "Alpha Inc" in html
    assert "ws_alpha" in html
    changelist = response.context["cl"]
    alpha = next(w for w in changelist.result_list if w.slug == "alpha")
    assert changelist.model_admin.member_count(alpha) == 2


def test_staff_open_a_workspace_with_its_members_inline(staff_client: Client) -> None:
    workspace = Workspace.objects.get(slug="alpha")
    response = staff_client.get(reverse("admin:tenants_workspace_change", args=[workspace.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "owner@alpha.test" in html
    assert "member@alpha.test" in html


def test_audit_trail_is_read_only_in_the_admin(staff_client: Client) -> None:
    response = staff_client.get(reverse("admin:tenants_auditevent_add"))
    assert response.status_code == 403


def test_workspace_members_cannot_enter_the_back_office(owner_client: Client) -> None:
    response = owner_client.get(reverse("admin:tenants_workspace_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
