"""The personas every test starts from, and clients acting as them:

- `owner` and `member` of workspace A ("alpha"),
- `outsider`, owner of workspace B ("bravo"), who must never see anything of A.

`ensure_world()` creates what is missing and returns them; it is safe to call repeatedly.
"""

from __future__ import annotations

from dataclasses import dataclass

from allauth.account.models import EmailAddress
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_exists
from rest_framework.test import APIClient

from accounts.models import User
from tenants import provisioning, services
from tenants.models import Membership, Role, Workspace
from tenants.permissions import Access

PASSWORD = "correct-horse-battery-staple"


@dataclass
class World:
    workspace_a: Workspace
    workspace_b: Workspace
    owner: User
    member: User
    outsider: User


def make_user(email: str, *, password: str = PASSWORD) -> User:
    user = User.objects.filter(email=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password=password)
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


def make_workspace(*, slug: str, owner: User, name: str | None = None) -> Workspace:
    workspace = Workspace.objects.filter(slug=slug).first()
    if workspace is not None:
        return workspace
    schema = services.workspace_schema_name(slug)
    if schema_exists(schema):  # a transactional test flushed the row but not the schema
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {schema} CASCADE")
    return services.workspace_create(user=owner, name=name or slug.title(), slug=slug)


def ensure_world() -> World:
    provisioning.template_workspace()
    owner = make_user("owner@alpha.test")
    member = make_user("member@alpha.test")
    outsider = make_user("outsider@bravo.test")
    workspace_a = make_workspace(slug="alpha", owner=owner, name="Alpha Inc")
    workspace_b = make_workspace(slug="bravo", owner=outsider, name="Bravo Ltd")
    Membership.objects.get_or_create(
        user=member, workspace=workspace_a, defaults={"role": Role.MEMBER}
    )
    return World(workspace_a, workspace_b, owner, member, outsider)


def access_of(user: User, workspace: Workspace) -> Access:
    membership = Membership.objects.get(user=user, workspace=workspace)
    return Access(workspace=workspace, user=user, role=membership.role)


def key_client(world: World, scopes: list[str], *, workspace: Workspace | None = None) -> APIClient:
    """A client authenticated with a new API key of `workspace` (default alpha) and `scopes`,
    created by that workspace's owner."""
    workspace = workspace or world.workspace_a
    owner = world.owner if workspace == world.workspace_a else world.outsider
    _, secret = services.api_key_create(
        access=access_of(owner, workspace), name="ci", scopes=scopes
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client
