"""The demo seed: a workspace with an owner and a member, and a staff login. Idempotent."""

from __future__ import annotations

from dataclasses import dataclass

from allauth.account.models import EmailAddress
from django.db import transaction

from accounts.models import User
from agents.demo import seed_demo_agents
from billing.demo import seed_demo_plans
from marketplace.catalog_import import import_catalog
from marketplace.demo import seed_demo_marketplace
from tenants import services
from tenants.models import Membership, Role, Workspace
from tenants.permissions import Access
from workflows.demo import seed_demo_workflows

DEMO_SLUG = "demo"
DEMO_USERS = [
    ("staff", "admin@demo.local", None),
    ("owner", "owner@demo.local", Role.OWNER),
    ("member", "member@demo.local", Role.MEMBER),
]


@dataclass
class DemoResult:
    workspace: Workspace
    logins: list[tuple[str, str]]
    created: bool


def _user(email: str, password: str, *, staff: bool) -> User:
    user = User.objects.filter(email=email).first()
    if user is None:
        if staff:
            user = User.objects.create_superuser(email=email, password=password)
        else:
            user = User.objects.create_user(email=email, password=password)
    EmailAddress.objects.update_or_create(
        user=user, email=email, defaults={"verified": True, "primary": True}
    )
    return user


def seed_demo(*, password: str) -> DemoResult:
    seed_demo_plans()  # Free is the default (a migration); Pro and Team to upgrade to
    users = {
        label: _user(email, password, staff=label == "staff") for label, email, _ in DEMO_USERS
    }
    workspace = Workspace.objects.filter(slug=DEMO_SLUG).first()
    created = workspace is None
    if workspace is None:
        workspace = services.workspace_create(
            user=users["owner"], name="Demo Workspace", slug=DEMO_SLUG
        )
    with transaction.atomic():
        for label, _email, role in DEMO_USERS:
            if role is not None:
                Membership.objects.get_or_create(
                    user=users[label], workspace=workspace, defaults={"role": role}
                )
    owner_access = Access(workspace=workspace, user=users["owner"], role=Role.OWNER)
    seed_demo_agents(access=owner_access, workspace=workspace)
    seed_demo_workflows(access=owner_access, workspace=workspace)
    # The marketplace catalogue (public schema; unchanged listings are skipped).
    report = import_catalog()
    if report.errors:
        raise RuntimeError(f"The shipped catalogue did not import: {report.errors[0]}")
    seed_demo_marketplace(access=owner_access)
    return DemoResult(
        workspace=workspace,
        logins=[(label, email) for label, email, _ in DEMO_USERS],
        created=created,
    )
