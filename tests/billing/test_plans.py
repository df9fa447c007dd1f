"""Plans: every workspace is on one. New workspaces start on the default plan (with its trial),
older ones get a row the first time they are read, staff manage plans in the admin, and the
database refuses a second default or a paid default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from billing.demo import seed_demo_plans
from billing.models import Plan, WorkspacePlan
from billing.plans import default_plan, month_after, workspace_plan
from tenants import services
from tests.helpers.personas import World, logged_in, make_user

pytestmark = pytest.mark.django_db


def test_a_new_workspace_starts_on_the_default_plan_for_one_month(world: World) -> None:
    owner = make_user("founder@gamma.test")
    before = timezone.now()
    workspace = services.workspace_create(user=owner, name="Gamma", slug="gamma")

    row = WorkspacePlan.objects.select_related("plan").get(workspace=workspace)
    assert row.plan == default_plan()
    assert row.plan.key == "free"
    assert row.status == WorkspacePlan.Status.ACTIVE
    assert row.trial_ends_at is None
    assert before <= row.current_period_start <= timezone.now()
    assert row.current_period_end == month_after(row.current_period_start)


def test_the_default_plans_trial_starts_with_the_workspace(world: World) -> None:
    Plan.objects.filter(is_default=True).update(trial_days=14)
    workspace = services.workspace_create(
        user=make_user("founder@delta.test"), name="Delta", slug="delta"
    )
    row = WorkspacePlan.objects.get(workspace=workspace)
    assert row.status == WorkspacePlan.Status.TRIALING
    assert row.trial_ends_at is not None
    assert row.trial_ends_at - row.current_period_start == timedelta(days=14)


def test_a_workspace_without_a_plan_row_gets_one_when_read(world: World) -> None:
    WorkspacePlan.objects.filter(workspace=world.workspace_a).delete()
    row = workspace_plan(workspace=world.workspace_a)
    assert row.plan.is_default
    assert workspace_plan(workspace=world.workspace_a).pk == row.pk  # not created twice


def test_without_any_default_plan_free_becomes_the_default(world: World) -> None:
    Plan.objects.filter(is_default=True).update(is_default=False)
    assert default_plan().key == "free"
    assert Plan.objects.filter(is_default=True).count() == 1


def test_the_database_refuses_a_second_default_and_a_paid_default(world: World) -> None:
    default_plan()
    with pytest.raises(IntegrityError), transaction.atomic():
        Plan.objects.create(key="other", name="Other", is_default=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        Plan.objects.filter(is_default=True).update(monthly_price_cents=500)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2026, 1, 31, 9, tzinfo=UTC), datetime(2026, 2, 28, 9, tzinfo=UTC)),
        (datetime(2028, 1, 31, 9, tzinfo=UTC), datetime(2028, 2, 29, 9, tzinfo=UTC)),
        (datetime(2026, 12, 15, 0, tzinfo=UTC), datetime(2027, 1, 15, 0, tzinfo=UTC)),
        (datetime(2026, 3, 31, 23, 59, tzinfo=UTC), datetime(2026, 4, 30, 23, 59, tzinfo=UTC)),
    ],
)
def test_a_billing_period_ends_the_same_day_next_month_or_its_last_day(
    start: datetime, end: datetime
) -> None:
    assert month_after(start) == end


def test_the_demo_plans_are_seeded_once_and_keep_staff_edits(world: World) -> None:
    seed_demo_plans()
    Plan.objects.filter(key="pro").update(monthly_price_cents=3900)
    seed_demo_plans()
    assert Plan.objects.filter(key__in=["pro", "team"]).count() == 2
    pro = Plan.objects.get(key="pro")
    assert pro.monthly_price_cents == 3900
    assert pro.allows_overage
    assert pro.included_ai_spend_usd == Decimal("20.00")
    assert pro.lookup_key("month") == "plan_pro_month"


def test_staff_manage_plans_and_see_every_workspaces_plan(world: World) -> None:
    staff = User.objects.create_superuser(email="staff@platform.test", password="x")
    client: Client = logged_in(staff)
    workspace_plan(workspace=world.workspace_a)
    plans = client.get(reverse("admin:billing_plan_changelist")).content.decode()
    assert "Free" in plans
    rows = client.get(reverse("admin:billing_workspaceplan_changelist"), {"q": "alpha"})
    assert rows.status_code == 200
    assert "Alpha Inc" in rows.content.decode()
    # Rows come with the workspace: staff cannot add or delete them by hand.
    assert client.get(reverse("admin:billing_workspaceplan_add")).status_code == 403
    free = Plan.objects.get(key="free")
    assert client.get(reverse("admin:billing_plan_delete", args=[free.pk])).status_code == 403


def test_members_of_a_workspace_cannot_open_the_plan_admin(world: World) -> None:
    client = logged_in(world.owner)
    response = client.get(reverse("admin:billing_plan_changelist"))
    assert response.status_code == 302
    assert "/login/" in response["Location"]
