"""The workspace's Billing page: owners and admins only (members and viewers 403, another
workspace's people 404, anonymous to sign-in) on every billing route; usage bars with this
period's figures; the "billing is off" and test-mode banners; invoices from dj-stripe's rows
after a real checkout through the loopback Stripe; Upgrade and Manage payment redirect to
Stripe, or say what went wrong on the page."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
import stripe
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_tenants.utils import schema_context
from djstripe.models import Customer, Invoice, Subscription
from rest_framework.test import APIClient

from accounts.models import User
from agents.models import KnowledgeBase, KnowledgeDocument, UsageRecord
from agents.services import agent_create, agent_run_start
from billing.demo import seed_demo_plans
from billing.models import Plan, WorkspacePlan
from billing.plans import default_plan, workspace_plan
from billing.stripe_client import stripe_client
from billing.stripe_sync import plans_sync
from tenants import services as tenant_services
from tenants.models import Membership, Role
from tests.fakes import FakeStripe
from tests.helpers.personas import World, access_of, logged_in, make_user
from tests.helpers.workflows import flow, make_workflow, transform

pytestmark = pytest.mark.django_db

# dj-stripe checks a key's shape before it syncs anything.
KEY = "sk_test_billingpage0000000000000000"
ROUTES = [("get", "billing"), ("post", "billing_upgrade"), ("post", "billing_portal")]


def _url(name: str, slug: str = "alpha") -> str:
    return reverse(name, kwargs={"workspace_slug": slug})


def _person(world: World, role: str) -> User:
    user = make_user(f"{role}@alpha.test")
    Membership.objects.get_or_create(
        user=user, workspace=world.workspace_a, defaults={"role": role}
    )
    return user


@pytest.fixture
def billing_off(settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = ""
    settings.STRIPE_LIVE_SECRET_KEY = ""
    settings.STRIPE_LIVE_MODE = False


@pytest.mark.parametrize(("method", "name"), ROUTES)
def test_every_billing_route_is_for_owners_and_admins_only(
    world: World, billing_off: None, method: str, name: str
) -> None:
    url = _url(name)

    anonymous = getattr(Client(), method)(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("account_login"))

    assert getattr(logged_in(world.outsider), method)(url).status_code == 404
    for role in (Role.VIEWER, Role.MEMBER):
        refused = getattr(logged_in(_person(world, role)), method)(url)
        assert refused.status_code == 403, role
        assert "Your role" in refused.content.decode()

    for user in (world.owner, _person(world, Role.ADMIN)):
        answer = getattr(logged_in(user), method)(url)
        if method == "get":
            assert answer.status_code == 200
        else:  # billing is off: back to the page with the reason, never a 5xx
            assert answer.status_code == 302
            assert answer["Location"] == _url("billing")


def test_the_navigation_links_the_page_for_owners_and_admins_only(world: World) -> None:
    link = f'href="{_url("billing")}"'
    assert link in logged_in(world.owner).get(_url("workspace_dashboard")).content.decode()
    assert link in logged_in(_person(world, Role.ADMIN)).get(_url("agent_list")).content.decode()
    assert link not in logged_in(world.member).get(_url("agent_list")).content.decode()


def _bar(html: str, key: str) -> dict[str, str]:
    """The progress bar of allowance `key`: its aria attributes, and the figure beside it."""
    item = re.search(rf'data-meter="{key}">(.*?)</li>', html, re.S)
    assert item, f"no allowance {key}"
    block = item.group(1)
    figure = re.search(r'class="allowance__figure">(.*?)</span>\s*</div>', block, re.S)
    bar = re.search(r'role="progressbar"([^>]*)>', block)
    attrs = dict(re.findall(r'(aria-[a-z]+)="([^"]*)"', bar.group(1))) if bar else {}
    text = re.sub(r"<[^>]+>", "", figure.group(1) if figure else "")
    return {"figure": " ".join(text.split()), **attrs}


def test_usage_bars_show_this_periods_figures(world: World, settings: Any) -> None:
    # Given quotas on and a plan with small allowances
    settings.BILLING_QUOTAS = True
    plan = default_plan()
    plan.runs_per_month = 10
    plan.workflows = 4
    plan.seats = 5
    plan.knowledge_storage_mb = 1
    plan.included_ai_spend_usd = Decimal("2.00")
    plan.save()
    access = access_of(world.owner, world.workspace_a)
    # When the workspace runs 3 times, has 2 active workflows (and an archived one), half a MB
    # of knowledge and $0.50 of AI spend, with one pending invitation
    with schema_context(world.workspace_a.schema_name):
        agent = agent_create(access=access, name="Helper", model="offline:demo")
        for _ in range(3):
            agent_run_start(access=access, agent_id=agent.pk, input="hi")
        make_workflow(flow([transform("a", "x")], []), name="One")
        make_workflow(flow([transform("a", "x")], []), name="Two")
        archived = make_workflow(flow([transform("a", "x")], []), name="Old")
        archived.archived_at = archived.created_at
        archived.save(update_fields=["archived_at"])
        base = KnowledgeBase.objects.create(name="Docs")
        KnowledgeDocument.objects.create(
            knowledge_base=base,
            filename="a.txt",
            content_type="text/plain",
            size_bytes=512 * 1024,
            sha256="1" * 64,
            content=b"x",
            status=KnowledgeDocument.Status.READY,
        )
        UsageRecord.objects.create(
            kind="anthropic", model="claude", outcome="ok", cost_usd=Decimal("0.5")
        )
    tenant_services.invitation_create(access=access, email="new@alpha.test", role=Role.MEMBER)

    html = logged_in(world.owner).get(_url("billing")).content.decode()

    # Then each allowance has a labelled bar with the right figure
    runs = _bar(html, "runs")
    assert runs["figure"] == "3 of 10"
    assert runs["aria-valuenow"] == "30"
    assert runs["aria-labelledby"] == "allowance-runs"
    assert runs["aria-valuetext"] == "3 of 10"
    assert _bar(html, "workflows")["figure"] == "2 of 4"
    assert _bar(html, "workflows")["aria-valuenow"] == "50"
    seats = _bar(html, "seats")  # owner, member and the invitation
    assert seats["figure"] == "3 of 5"
    assert _bar(html, "knowledge_storage")["figure"] == "512.0 KB of 1.0 MB"
    assert _bar(html, "knowledge_storage")["aria-valuenow"] == "50"
    spend = _bar(html, "ai_spend")
    assert spend["figure"] == "$0.50 of $2.00"
    assert spend["aria-valuenow"] == "25"
    assert 'id="allowance-runs">Runs<' in html
    assert "Free plan" in html
    assert "overage so far" not in html  # Free refuses overage


def test_an_unlimited_allowance_has_no_bar_and_overage_is_shown_on_overage_plans(
    world: World, billing_off: None
) -> None:
    plan = Plan.objects.create(
        key="scale",
        name="Scale",
        monthly_price_cents=5000,
        included_ai_spend_usd=Decimal("1.00"),
        allows_overage=True,
        runs_per_month=None,
    )
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(plan=plan)
    with schema_context(world.workspace_a.schema_name):
        UsageRecord.objects.create(
            kind="anthropic", model="claude", outcome="ok", cost_usd=Decimal("1.75")
        )

    html = logged_in(world.owner).get(_url("billing")).content.decode()

    assert _bar(html, "runs") == {"figure": "0 · unlimited"}
    assert _bar(html, "ai_spend")["aria-valuenow"] == "100"
    assert "over the allowance" in _bar(html, "ai_spend")["aria-valuetext"]
    assert re.search(r'id="overage">\$0\.75<', html)
    assert "$50.00" in html


def test_billing_off_says_which_setting_connects_stripe(world: World, billing_off: None) -> None:
    html = logged_in(world.owner).get(_url("billing")).content.decode()

    assert "Billing is off." in html
    assert "STRIPE_TEST_SECRET_KEY" in html
    assert "no real money" not in html


def test_a_test_key_shows_the_test_mode_banner(world: World, settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = "sk_test_abc"
    settings.STRIPE_LIVE_MODE = False

    html = logged_in(world.owner).get(_url("billing")).content.decode()

    assert "Billing test mode — no real money" in html
    assert "Billing is off" not in html


def test_live_mode_shows_no_banner(world: World, settings: Any) -> None:
    settings.STRIPE_LIVE_SECRET_KEY = "sk_live_abc"
    settings.STRIPE_LIVE_MODE = True

    html = logged_in(world.owner).get(_url("billing")).content.decode()

    assert "no real money" not in html
    assert "Billing is off" not in html


def test_plans_to_move_to_have_an_upgrade_button_per_interval(
    world: World, billing_off: None
) -> None:
    seed_demo_plans()
    Plan.objects.create(key="solo", name="Solo", monthly_price_cents=900, yearly_price_cents=9000)

    html = logged_in(world.owner).get(_url("billing")).content.decode()

    def button(key: str, interval: str) -> bool:
        return bool(
            re.search(
                rf'name="plan" value="{key}">\s*<input type="hidden" name="interval" '
                rf'value="{interval}">',
                html,
            )
        )

    offered = [("pro", "month"), ("team", "month"), ("solo", "month"), ("solo", "year")]
    assert all(button(key, interval) for key, interval in offered)
    # plans that bill overage (metered monthly) are sold monthly only
    assert not button("pro", "year")
    assert not button("team", "year")
    assert 'value="free"' not in html  # the current plan has no button
    assert "Current plan" in html
    assert "No invoices yet." in html


def test_a_subscribed_workspace_switches_plans_in_the_portal_not_checkout(
    world: World, billing_off: None
) -> None:
    seed_demo_plans()
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(
        plan=Plan.objects.get(key="pro"), stripe_customer_id="cus_x", stripe_subscription_id="sub_x"
    )

    html = logged_in(world.owner).get(_url("billing")).content.decode()

    assert 'name="plan"' not in html
    assert "switch to Team with <em>Manage payment</em>" in html
    assert _url("billing_portal") in html


def test_a_failed_payment_shows_the_grace_end_and_cancel_at_period_end_is_announced(
    world: World, billing_off: None
) -> None:
    row = workspace_plan(workspace=world.workspace_a)
    row.status = WorkspacePlan.Status.PAST_DUE
    row.grace_ends_at = row.current_period_start
    row.cancel_at_period_end = True
    row.save()

    html = logged_in(world.owner).get(_url("billing")).content.decode()

    assert "The last payment failed." in html
    assert "Grace period ends" in html
    assert "The subscription ends on" in html

    row.status = WorkspacePlan.Status.READ_ONLY
    row.save()
    assert (
        "This workspace is read-only"
        in logged_in(world.owner).get(_url("billing")).content.decode()
    )


def test_upgrade_goes_to_stripe_checkout_and_the_invoice_is_listed_after_payment(
    world: World, fake_stripe: FakeStripe
) -> None:
    # Given the demo plans mirrored to the loopback Stripe
    seed_demo_plans()
    plans_sync(stripe_client())
    owner = logged_in(world.owner)

    # When the owner upgrades to Pro, monthly
    answer = owner.post(_url("billing_upgrade"), {"plan": "pro", "interval": "month"})

    # Then the browser goes to Stripe's checkout, with our page as the way back
    assert answer.status_code == 302
    assert answer["Location"].startswith(f"{fake_stripe.base_url}/test/checkout/cs_test_")
    (session,) = [r for r in fake_stripe.requests if r.path == "/v1/checkout/sessions"]
    assert session.body["success_url"] == (f"http://testserver{_url('billing')}?checkout=done")
    # and the plan has not changed (only the webhook changes it)
    row = workspace_plan(workspace=world.workspace_a)
    assert row.plan.key == "free"

    # When Stripe completes the payment and its invoice reaches dj-stripe
    subscription = fake_stripe.complete_checkout(answer["Location"].rsplit("/", 1)[-1])
    invoice = stripe.Invoice.retrieve(subscription["latest_invoice"], api_key=KEY)
    Invoice.sync_from_stripe_data(invoice, api_key=KEY)

    # Then the success page says the plan changes on confirmation, and lists the invoice
    html = owner.get(_url("billing") + "?checkout=done").content.decode()
    assert "Your plan will change as soon as Stripe confirms the payment" in html
    synced = Invoice.objects.get(id=subscription["latest_invoice"])
    assert synced.customer_id == row.stripe_customer_id
    assert f'href="{synced.hosted_invoice_url}"' in html
    assert "$29.00" in html
    assert re.search(r'badge--success">paid<', html)
    assert "No invoices yet." not in html
    # and once the subscription reaches dj-stripe too, the API names its interval
    Subscription.sync_from_stripe_data(
        stripe.Subscription.retrieve(subscription["id"], api_key=KEY), api_key=KEY
    )
    WorkspacePlan.objects.filter(pk=row.pk).update(stripe_subscription_id=subscription["id"])
    api = APIClient()
    api.force_login(world.owner)
    assert api.get("/api/v1/billing/", HTTP_X_WORKSPACE="alpha").json()["interval"] == "month"
    # and Manage payment opens the customer portal
    portal = owner.post(_url("billing_portal"))
    assert portal.status_code == 302
    assert portal["Location"].startswith(fake_stripe.base_url)


def test_another_customers_invoices_are_not_listed(world: World, fake_stripe: FakeStripe) -> None:
    seed_demo_plans()
    plans_sync(stripe_client())
    bravo = logged_in(world.outsider).post(
        _url("billing_upgrade", "bravo"), {"plan": "pro", "interval": "month"}
    )
    subscription = fake_stripe.complete_checkout(bravo["Location"].rsplit("/", 1)[-1])
    invoice = stripe.Invoice.retrieve(subscription["latest_invoice"], api_key=KEY)
    Invoice.sync_from_stripe_data(invoice, api_key=KEY)

    html = logged_in(world.owner).get(_url("billing")).content.decode()

    assert subscription["latest_invoice"] not in html
    assert "No invoices yet." in html


def test_a_refused_upgrade_or_portal_is_a_message_on_the_page(
    world: World, fake_stripe: FakeStripe
) -> None:
    seed_demo_plans()
    owner = logged_in(world.owner)

    unknown = owner.post(
        _url("billing_upgrade"), {"plan": "gold", "interval": "month"}, follow=True
    )
    portal = owner.post(_url("billing_portal"), follow=True)

    assert unknown.status_code == 200
    assert "There is no plan “gold”" in unknown.content.decode()
    assert portal.status_code == 200
    assert "subscribe to a paid plan with Upgrade first" in portal.content.decode()


def test_stripe_unreachable_is_a_message_not_an_error(world: World, settings: Any) -> None:
    seed_demo_plans()
    settings.STRIPE_TEST_SECRET_KEY = KEY
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens on the discard port

    answer = logged_in(world.owner).post(
        _url("billing_upgrade"), {"plan": "pro", "interval": "month"}, follow=True
    )

    assert answer.status_code == 200
    assert "Stripe could not be reached" in answer.content.decode()


def test_the_page_takes_the_same_queries_whatever_the_number_of_invoices(
    world: World, billing_off: None
) -> None:
    customer = Customer.objects.create(id="cus_count", livemode=False, stripe_data={})
    WorkspacePlan.objects.filter(workspace=world.workspace_a).update(stripe_customer_id=customer.id)
    owner = logged_in(world.owner)
    owner.get(_url("billing"))  # the first request of a session fills per-process caches

    def queries_with(invoices: int) -> int:
        for number in range(Invoice.objects.count(), invoices):
            Invoice.objects.create(
                id=f"in_count{number:04d}",
                customer=customer,
                livemode=False,
                stripe_data={
                    "number": f"N-{number}",
                    "currency": "usd",
                    "total": 100,
                    "status": "paid",
                    "hosted_invoice_url": f"https://invoice.stripe.test/{number}",
                },
            )
        with CaptureQueriesContext(connection) as queries:
            assert owner.get(_url("billing")).status_code == 200
        return len(queries)

    assert queries_with(1) == queries_with(6)
