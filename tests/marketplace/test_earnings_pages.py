"""The publisher's Earnings page, its CSV statement and the earnings/payouts API: owners and
admins see their own figures; members (and viewers) 403; outsiders 404; a workspace that never
sold sees the empty state."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from marketplace import earnings
from marketplace.payouts import payouts_run
from tenants.models import Membership, Role
from tests.fakes import FakeStripe
from tests.helpers.money import Shop, make_purchase, make_shop
from tests.helpers.personas import World, key_client, logged_in, make_user

PAGE = "/w/alpha/marketplace/earnings/"
CSV = "/w/alpha/marketplace/earnings/statement.csv"
API = "/api/v1/marketplace/"


@pytest.fixture
def paid_shop(world: World, fake_stripe: FakeStripe) -> Shop:
    """Alpha sold twice: one sale 10 days ago, paid out; one today, pending."""
    shop = make_shop(workspace=world.workspace_a)
    now = timezone.now()
    for gross, when in ((2500, now - timedelta(days=10)), (1000, now)):
        purchase = make_purchase(
            shop, buyer=world.workspace_b if gross == 2500 else world.workspace_a, amount=gross
        )
        charge = fake_stripe.add_charge(gross, "usd")
        earnings.sale_record(
            purchase=purchase, gross_cents=gross, stripe_ref=charge["id"], occurred_at=when
        )
    earnings.earnings_release()
    payouts_run()
    return shop


def test_the_owner_sees_balances_by_day_by_listing_and_payouts(
    paid_shop: Shop, owner_client: Client, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(20):  # a fixed number, whatever the sales and payouts
        response = owner_client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<span class="stat__value" id="balance-pending">$8.00</span>' in html
    assert 'id="balance-paid">$20.00</span>' in html
    assert paid_shop.listing.title in html
    assert "$28.00" in html  # net of both sales, by listing
    payout = earnings.creator_payouts(publisher_id=paid_shop.publisher.pk).get()
    assert payout.stripe_transfer_id in html
    assert '<svg class="earnings-chart"' in html
    assert html.count('class="earnings-chart__bar') == 30


def test_a_workspace_without_sales_sees_the_empty_state(world: World, owner_client: Client) -> None:
    response = owner_client.get(PAGE)
    assert response.status_code == 200
    assert "No sales yet." in response.content.decode()


def test_members_are_refused_and_outsiders_do_not_see_the_page(
    paid_shop: Shop, member_client: Client, outsider_client: Client
) -> None:
    assert member_client.get(PAGE).status_code == 403
    assert member_client.get(CSV).status_code == 403
    assert outsider_client.get(PAGE).status_code == 404
    assert outsider_client.get(CSV).status_code == 404


def test_the_workspace_marketplace_page_links_a_publishers_owner_to_earnings(
    paid_shop: Shop, owner_client: Client, member_client: Client
) -> None:
    link = f'href="{PAGE}">Earnings</a>'
    assert link in owner_client.get("/w/alpha/marketplace/").content.decode()
    assert link not in member_client.get("/w/alpha/marketplace/").content.decode()


def test_the_csv_statement_lists_every_entry_in_the_date_range(
    paid_shop: Shop, owner_client: Client
) -> None:
    response = owner_client.get(CSV)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    kinds = [row["kind"] for row in rows]
    assert kinds.count("Sale") == 2
    assert kinds.count("Hold ended") == 2
    assert kinds.count("Payout") == 2
    sale = next(row for row in rows if row["kind"] == "Sale" and row["gross"] == "25.00")
    assert (sale["platform_fee"], sale["amount"], sale["currency"]) == ("5.00", "20.00", "USD")
    assert sale["listing"] == paid_shop.listing.title
    payout = next(row for row in rows if row["kind"] == "Payout" and row["balance"] == "Paid out")
    assert payout["amount"] == "20.00"

    today = timezone.now().date().isoformat()
    only_today = list(
        csv.DictReader(io.StringIO(owner_client.get(CSV, {"from": today}).content.decode()))
    )
    assert [row["gross"] for row in only_today if row["kind"] == "Sale"] == ["10.00"]

    bad = owner_client.get(CSV, {"from": "yesterday"})
    assert bad.status_code == 400
    assert "From: a date like" in bad.content.decode()


def test_the_api_gives_the_creator_their_earnings_and_payouts(
    paid_shop: Shop, world: World, owner_client: Client
) -> None:
    response = owner_client.get(API + "earnings/", HTTP_X_WORKSPACE="alpha")
    assert response.status_code == 200
    body = response.json()
    assert body["balances"] == [
        {"currency": "usd", "pending": 800, "available": 0, "frozen": 0, "paid": 2000}
    ]
    (listing,) = body["listings"]
    assert listing["currency"] == "usd"
    assert (listing["sales"], listing["gross_cents"], listing["net_cents"]) == (2, 3500, 2800)

    payouts = key_client(world, ["billing.view"]).get(API + "payouts/")
    assert payouts.status_code == 200
    (payout,) = payouts.json()["results"]
    assert payout["amount_cents"] == 2000
    assert payout["status"] == "paid"
    assert payout["stripe_transfer_id"].startswith("tr_")


def test_the_api_never_shows_another_workspaces_earnings(
    paid_shop: Shop, world: World, member_client: Client, outsider_client: Client
) -> None:
    assert outsider_client.get(API + "earnings/", HTTP_X_WORKSPACE="alpha").status_code == 404
    assert outsider_client.get(API + "payouts/", HTTP_X_WORKSPACE="alpha").status_code == 404
    # bravo's own earnings: it never published
    bravo = key_client(world, ["billing.view"], workspace=world.workspace_b)
    assert bravo.get(API + "earnings/").status_code == 404
    assert member_client.get(API + "earnings/", HTTP_X_WORKSPACE="alpha").status_code == 403
    assert key_client(world, ["workspace.view"]).get(API + "payouts/").status_code == 403


def test_viewers_get_no_earnings_page_statement_or_api(paid_shop: Shop, world: World) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    client = logged_in(viewer)
    assert client.get(PAGE).status_code == 403
    assert client.get(CSV).status_code == 403
    assert client.get(API + "earnings/", HTTP_X_WORKSPACE="alpha").status_code == 403
    assert client.get(API + "payouts/", HTTP_X_WORKSPACE="alpha").status_code == 403


def test_statement_date_errors_are_shown_beside_the_dates(
    paid_shop: Shop, owner_client: Client
) -> None:
    reversed_range = owner_client.get(CSV, {"from": "2026-03-10", "to": "2026-03-01"})
    assert reversed_range.status_code == 400
    assert reversed_range["Content-Type"].startswith("text/html")
    html = reversed_range.content.decode()
    assert "<h1>Earnings</h1>" in html  # the page itself, not an error page
    assert (
        '<ul class="errorlist" id="statement-from_error"><li>From: on or before To '
        "(2026-03-01).</li></ul>"
    ) in html
    assert 'aria-describedby="statement-from_error"' in html
    assert 'name="from" class="input"' in html
    assert 'value="2026-03-10"' in html
    assert 'id="balance-paid">$20.00</span>' in html  # the figures are still there

    malformed = owner_client.get(CSV, {"from": "2026-02-30", "to": "nope"})
    assert malformed.status_code == 400
    html = malformed.content.decode()
    assert "From: a date like 2026-03-01 (got &#x27;2026-02-30&#x27;)." in html
    assert (
        '<ul class="errorlist" id="statement-to_error"><li>To: a date like 2026-03-01 '
        "(got &#x27;nope&#x27;).</li></ul>"
    ) in html
