"""`manage.py billing_reconcile` compares Stripe's AI-spend meter summaries (the loopback fake,
through the real SDK) with our ledger per workspace for a month: zero difference once the
outbox has sent everything, a non-zero difference (and exit status 1) for spend Stripe never
heard of, and clear errors for a bad period, an unknown workspace, no meter and billing off."""

from __future__ import annotations

import re
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import UsageRecord
from billing.meter import meter_flush
from billing.models import WorkspacePlan
from billing.stripe_client import stripe_client
from billing.stripe_sync import plans_sync
from tests.fakes import FakeStripe
from tests.helpers.billing import bill, on_overage_plan
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db


def reconcile(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("billing_reconcile", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def metered(world: World, fake_stripe: FakeStripe) -> FakeStripe:
    on_overage_plan(world.workspace_a, customer="cus_a")
    on_overage_plan(world.workspace_b, customer="cus_b")
    plans_sync(stripe_client())
    return fake_stripe


def test_everything_sent_reconciles_to_zero_and_unsent_spend_is_a_difference(
    world: World, metered: FakeStripe
) -> None:
    bill(world.workspace_a, "0.25")
    bill(world.workspace_a, "1.000001")
    bill(world.workspace_b, "0.5")
    assert meter_flush(stripe_client()).sent == 3

    out, err = reconcile()

    assert "alpha" in out
    assert "bravo" in out
    assert "$1.250001" in out  # ours and Stripe's for alpha
    assert "2 workspace(s), no difference." in out
    assert "checked 2 of 2 workspaces" in err

    # Spend in the ledger that never reached the outbox (or Stripe): a difference, exit 1.
    with schema_context(world.workspace_a.schema_name):
        UsageRecord.objects.create(
            kind="openai_compatible", model="m1", outcome="ok", cost_usd=Decimal("0.75")
        )
    with pytest.raises(CommandError) as differs:
        reconcile("--period", f"{timezone.now():%Y-%m}")
    assert differs.value.returncode == 1
    assert "1 of 2 workspace(s) differ" in str(differs.value)

    # A pending outbox row is shown as not sent yet, and one workspace can be checked alone.
    bill(world.workspace_b, "0.1")
    table = StringIO()
    with pytest.raises(CommandError):
        call_command("billing_reconcile", "--workspace", "bravo", stdout=table)
    lines = table.getvalue().splitlines()
    assert len(lines) == 3  # the title, the header, bravo
    assert lines[2].split() == ["bravo", "cus_b", "$0.60", "$0.50", "$0.10", "$0.10"]


def test_spend_before_the_subscription_began_is_not_billable(
    world: World, metered: FakeStripe
) -> None:
    """A workspace that upgraded mid-month spent on Free first: that spend was never metered,
    and is no difference."""
    with schema_context(world.workspace_a.schema_name):
        UsageRecord.objects.create(
            kind="openai_compatible", model="m1", outcome="ok", cost_usd=Decimal("0.40")
        )
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(
        stripe_subscription_created=timezone.now()
    )
    bill(world.workspace_a, "0.25")
    assert meter_flush(stripe_client()).sent == 1
    out, _ = reconcile("--workspace", "alpha")
    assert out.splitlines()[2].split()[:4] == ["alpha", "cus_a", "$0.25", "$0.25"]
    assert "no difference" in out


def test_another_month_has_nothing_to_compare(world: World, metered: FakeStripe) -> None:
    bill(world.workspace_a, "0.25")
    meter_flush(stripe_client())
    out, _ = reconcile("--period", "2020-01")
    assert "2 workspace(s), no difference." in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "2026-13"], "--period must be a month as YYYY-MM (e.g. "),
        (["--period", "last month"], "not 'last month'"),
        (["--workspace", "nowhere"], "No workspace 'nowhere' with a Stripe customer"),
    ],
)
def test_bad_arguments_say_what_to_give(
    world: World, metered: FakeStripe, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        reconcile(*args)


def test_without_the_meter_it_says_to_sync_the_plans(world: World, fake_stripe: FakeStripe) -> None:
    on_overage_plan(world.workspace_a)
    with pytest.raises(CommandError, match=re.escape("run manage.py billing_sync_plans")):
        reconcile()


def test_with_billing_off_it_says_which_key_to_set(world: World, settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = ""
    with pytest.raises(CommandError, match="Billing is off: set STRIPE_TEST_SECRET_KEY"):
        reconcile()
