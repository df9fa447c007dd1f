"""The billing API: the workspace's plan, period, allowances with this period's figures and
overage (`GET /api/v1/billing/`), and its invoices (`GET /api/v1/billing/invoices/`, paginated).
Owners and admins in a session, keys with the `billing.view` scope; members, viewers and keys
without the scope 403; another workspace's people and keys see their own workspace or 404.
Both are in the OpenAPI schema."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context
from djstripe.models import Customer, Invoice
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.models import User
from agents.models import UsageRecord
from billing.models import Plan, WorkspacePlan
from billing.plans import workspace_plan
from tenants.models import Membership, Role
from tenants.permissions import Perm
from tests.helpers.personas import World, key_client, make_user

pytestmark = pytest.mark.django_db

BILLING = "/api/v1/billing/"
INVOICES = "/api/v1/billing/invoices/"


def _session(user: User, slug: str = "alpha") -> APIClient:
    client = APIClient()
    client.force_login(user)
    client.credentials(HTTP_X_WORKSPACE=slug)
    return client


def _person(world: World, role: str) -> User:
    user = make_user(f"{role}@alpha.test")
    Membership.objects.get_or_create(
        user=user, workspace=world.workspace_a, defaults={"role": role}
    )
    return user


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}
    return dict(body["error"])


@pytest.mark.parametrize("path", [BILLING, INVOICES])
def test_every_billing_endpoint_is_for_owners_admins_and_billing_keys(
    world: World, path: str
) -> None:
    assert APIClient().get(path).status_code in (401, 403)  # anonymous
    outsider = _session(world.outsider, "alpha").get(path)
    assert outsider.status_code == 404
    assert _error(outsider)["code"] == "not_found"
    for role in (Role.VIEWER, Role.MEMBER):
        refused = _session(_person(world, role)).get(path)
        assert refused.status_code == 403, role
        assert "billing.view" in _error(refused)["message"]
    for user in (world.owner, _person(world, Role.ADMIN)):
        assert _session(user).get(path).status_code == 200
    # Keys follow their scopes
    assert key_client(world, [Perm.BILLING_VIEW]).get(path).status_code == 200
    assert key_client(world, [Perm.WORKSPACE_VIEW, Perm.MEMBERS_VIEW]).get(path).status_code == 403


def test_an_outsiders_key_reads_its_own_workspace_not_alphas(world: World) -> None:
    bravo = Plan.objects.create(key="bravo-plan", name="Bravo plan", api_requests_per_minute=7)
    WorkspacePlan.objects.filter(workspace=world.workspace_b).update(plan=bravo)
    answer = key_client(world, [Perm.BILLING_VIEW], workspace=world.workspace_b).get(BILLING)
    assert answer.json()["plan"]["key"] == "bravo-plan"


def test_the_summary_has_plan_period_allowances_and_overage(world: World) -> None:
    plan = Plan.objects.create(
        key="scale",
        name="Scale",
        monthly_price_cents=5000,
        yearly_price_cents=50000,
        included_ai_spend_usd=Decimal("1.00"),
        allows_overage=True,
        runs_per_month=100,
        seats=None,
        features=["sso"],
    )
    row = workspace_plan(workspace=world.workspace_a)
    row.plan = plan
    row.runs_used = 7
    row.save()
    with schema_context(world.workspace_a.schema_name):
        UsageRecord.objects.create(
            kind="anthropic", model="claude", outcome="ok", cost_usd=Decimal("1.25")
        )

    body = _session(world.owner).get(BILLING).json()

    assert body["plan"] == {
        "key": "scale",
        "name": "Scale",
        "monthly_price_cents": 5000,
        "yearly_price_cents": 50000,
        "included_ai_spend_usd": "1.00",
        "allows_overage": True,
        "api_requests_per_minute": None,
        "features": ["sso"],
    }
    assert body["status"] == "active"
    assert body["interval"] is None  # no subscription yet
    assert body["cancel_at_period_end"] is False
    assert body["period_start"]
    assert body["period_end"]
    meters = {a["key"]: a for a in body["allowances"]}
    assert list(meters) == ["runs", "ai_spend", "seats", "workflows", "knowledge_storage"]
    assert meters["runs"]["used"] == "7.000000"
    assert meters["runs"]["limit"] == "100.000000"
    assert meters["runs"]["percent"] == 7
    assert meters["runs"]["unit"] == "count"
    assert meters["ai_spend"]["unit"] == "usd"
    assert meters["ai_spend"]["over"] is True
    assert meters["seats"]["limit"] is None  # unlimited
    assert meters["seats"]["used"] == "2.000000"  # owner and member
    assert meters["knowledge_storage"]["unit"] == "bytes"
    assert Decimal(body["overage_usd"]) == Decimal("0.25")


def test_the_run_count_of_a_period_that_ended_reads_zero(world: World) -> None:
    row = workspace_plan(workspace=world.workspace_a)
    row.runs_used = 5
    row.current_period_start = timezone.now() - timedelta(days=40)
    row.current_period_end = timezone.now() - timedelta(days=9)
    row.save()

    body = _session(world.owner).get(BILLING).json()

    runs = next(a for a in body["allowances"] if a["key"] == "runs")
    assert runs["used"] == "0.000000"
    assert body["period_end"] > timezone.now().isoformat()[:10]


def _invoice(number: int, customer: Customer, **data: Any) -> Invoice:
    invoice_id = f"in_test{number:04d}"
    return Invoice.objects.create(
        id=invoice_id,
        customer=customer,
        livemode=False,
        created=timezone.now() - timedelta(days=number),
        stripe_data={
            "id": invoice_id,
            "object": "invoice",
            "number": f"INV-{number:04d}",
            "currency": "usd",
            "total": 2900,
            "amount_due": 2900,
            "status": "paid",
            "hosted_invoice_url": f"https://invoice.stripe.test/{invoice_id}",
            **data,
        },
    )


def test_invoices_are_the_workspaces_own_newest_first_and_paginated(world: World) -> None:
    # dj-stripe rows as its sync stores them (the page test syncs real ones from the fake)
    ours = Customer.objects.create(id="cus_alpha", livemode=False, stripe_data={})
    theirs = Customer.objects.create(id="cus_bravo", livemode=False, stripe_data={})
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(stripe_customer_id=ours.id)
    WorkspacePlan.objects.filter(workspace=world.workspace_b).update(stripe_customer_id=theirs.id)
    for number in (1, 2, 3):
        _invoice(number, ours)
    _invoice(9, theirs)

    client = _session(world.owner)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(INVOICES, {"limit": 2}).json()

    assert page["count"] == 3
    assert [i["number"] for i in page["results"]] == ["INV-0001", "INV-0002"]
    assert page["next"]
    assert page["results"][0] == {
        "id": "in_test0001",
        "number": "INV-0001",
        "created": page["results"][0]["created"],
        "currency": "usd",
        "total_cents": 2900,
        "amount_due_cents": 2900,
        "status": "paid",
        "hosted_invoice_url": "https://invoice.stripe.test/in_test0001",
    }
    assert len(queries) < 12  # no query per invoice
    rest = client.get(page["next"]).json()
    assert [i["number"] for i in rest["results"]] == ["INV-0003"]


def test_a_workspace_without_a_customer_has_no_invoices(world: World) -> None:
    page = _session(world.owner).get(INVOICES).json()
    assert page == {"count": 0, "next": None, "previous": None, "results": []}


def test_the_schema_describes_both_endpoints() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    billing = schema["paths"]["/api/v1/billing/"]["get"]
    invoices = schema["paths"]["/api/v1/billing/invoices/"]["get"]
    assert billing["operationId"] == "billing_retrieve"
    assert invoices["operationId"] == "billing_invoices_list"
    for operation in (billing, invoices):
        assert {"200", "401", "403", "404", "429"} <= set(operation["responses"])
    components = schema["components"]["schemas"]
    assert {"BillingOutput", "AllowanceOutput", "PaginatedInvoiceList"} <= set(components)
    assert "overage_usd" in components["BillingOutput"]["properties"]
