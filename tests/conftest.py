"""Fixtures for the whole suite: real PostgreSQL and Redis (the embedded ones started by
`scripts/test`, or DATABASE_URL / REDIS_URL), the workspace template, and the personas:

- `owner` and `member` of workspace A ("alpha"),
- `outsider`, owner of workspace B ("bravo"), who must never see anything of A.

The personas are committed once per session (and re-created after a transactional test
flushed the tables), so ordinary tests start from them at no cost and roll back their own
changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_exists
from rest_framework.test import APIClient

from accounts.models import User
from tenants import provisioning, services
from tenants.models import Membership, Role, Workspace
from tenants.permissions import Access
from tenants.schemas import activate_public

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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on committed data flush the database afterwards. Workspace tables reference
    public ones (users), so the flush must cascade, which Django does only when
    `available_apps` is set: give those tests the full app list."""
    marker = pytest.mark.django_db(transaction=True, available_apps=list(settings.INSTALLED_APPS))
    for item in items:
        if "committed_world" in getattr(item, "fixturenames", ()):
            item.add_marker(marker, append=False)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        ensure_world()


@pytest.fixture(autouse=True)
def _public_schema_after_test() -> Iterator[None]:
    yield
    activate_public()


@pytest.fixture
def world(db: None) -> World:
    return ensure_world()


@pytest.fixture
def committed_world(transactional_db: None) -> World:
    """The personas for tests whose other processes or threads must see the rows."""
    return ensure_world()


@pytest.fixture
def owner(world: World) -> User:
    return world.owner


@pytest.fixture
def member(world: World) -> User:
    return world.member


@pytest.fixture
def outsider(world: World) -> User:
    return world.outsider


@pytest.fixture
def workspace_a(world: World) -> Workspace:
    return world.workspace_a


@pytest.fixture
def workspace_b(world: World) -> Workspace:
    return world.workspace_b


def access_of(user: User, workspace: Workspace) -> Access:
    membership = Membership.objects.get(user=user, workspace=workspace)
    return Access(workspace=workspace, user=user, role=membership.role)


@pytest.fixture
def owner_access(world: World) -> Access:
    return access_of(world.owner, world.workspace_a)


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


@pytest.fixture
def owner_client(owner: User) -> Client:
    return logged_in(owner)


@pytest.fixture
def member_client(member: User) -> Client:
    return logged_in(member)


@pytest.fixture
def outsider_client(outsider: User) -> Client:
    return logged_in(outsider)


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def database_url_for_children() -> str:
    """The URL of the database this test session uses (the `test_…` one), for subprocesses."""
    s = connection.settings_dict
    auth = quote(s["USER"] or "", safe="")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"], safe="")
    host = quote(s["HOST"] or "", safe="")
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{s['NAME']}"


@pytest.fixture(scope="module")
def worker_queue(django_db_setup: None) -> Iterator[str]:
    """A real Celery worker process on the real broker, reading the test database. It consumes
    the default queue (what `.delay()` uses) and a queue of its own; yields the latter."""
    from config.celery import app

    queue = f"test-{uuid.uuid4().hex[:8]}"
    app.control.purge()  # nothing left over from an earlier, interrupted session
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url_for_children(),
        "REDIS_URL": settings.REDIS_URL,
        # Webhook tests call back to receivers on 127.0.0.1.
        "OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "solo",
            "-Q",
            f"{settings.CELERY_TASK_DEFAULT_QUEUE},{queue}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        ],
        env=env,
    )
    try:
        yield queue
    finally:
        process.terminate()
        process.wait(timeout=30)
