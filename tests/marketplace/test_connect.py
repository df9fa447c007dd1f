"""Payouts setup from the Publish page, end to end: the real stripe SDK talks to the loopback
fake, which posts signed `account.updated` webhooks to dj-stripe's view on the running test
server. An owner sets up payouts (one Express account, whatever the retries), is sent to the
hosted onboarding, completes it and comes back to an onboarded status; an expired link is
refreshed; what Stripe still needs is listed in plain words; events delivered three times and
out of order leave the current state. A creator's account asks only for `transfers` (under
Stripe's recipient agreement outside the platform's country) and is onboarded once `transfers`
is active, though Stripe never enables charges on it. Members cannot set up payouts, outsiders
do not see the pages; billing off and Stripe down say so. The fake's Connect endpoints,
through the SDK."""

from __future__ import annotations

import http.client
import re
import urllib.parse
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
import stripe
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from djstripe.models import WebhookEndpoint

from marketplace.demo import demo_creator_account
from marketplace.models import CreatorAccount, Publisher
from tenants.models import AuditEvent, Membership, Role
from tests.fakes import FakeStripe
from tests.helpers.billing import workers_run
from tests.helpers.personas import World, logged_in, make_user

KEY = "sk_test_" + "platform" * 3


def _url(name: str, slug: str = "alpha") -> str:
    return reverse(name, kwargs={"workspace_slug": slug})


@pytest.fixture
def connect(committed_world: World, live_server: Any, settings: Any) -> Iterator[FakeStripe]:
    """The fake Stripe, with the platform's webhook endpoint registered on the live server and
    asking for `account.updated`; the workers process each delivery."""
    with FakeStripe() as fake:
        fake.after_delivery = workers_run
        settings.STRIPE_TEST_SECRET_KEY = KEY
        settings.STRIPE_API_BASE = fake.base_url
        call_command("billing_webhook_endpoint", url=live_server.url, stdout=StringIO())
        connect_endpoint = WebhookEndpoint.objects.get(metadata__endpoint="connect")
        assert "account.updated" in fake.objects[connect_endpoint.id]["enabled_events"]
        yield fake
    assert fake.server_errors == []


def _post(url: str) -> http.client.HTTPResponse:
    """A browser's form submit on one of the fake's hosted pages (redirects not followed)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    connection.request("POST", parts.path)
    return connection.getresponse()


def _get(url: str) -> http.client.HTTPResponse:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    connection.request("GET", parts.path)
    return connection.getresponse()


def _onboarding_url(answer: Any) -> str:
    """Where the Set up payouts answer sends the browser: its meta refresh and its link (a
    redirect would be blocked by the CSP's form-action 'self')."""
    assert answer.status_code == 200, answer.content
    html = answer.content.decode()
    (url,) = re.findall(r'id="onboarding-link" href="([^"]+)"', html)
    url = url.replace("&amp;", "&")
    assert f'<meta http-equiv="refresh" content="0; url={url}">' in html
    return url


def _delivered(fake: FakeStripe) -> list[int]:
    return [d.status for d in fake.deliveries if d.event_type == "account.updated"]


def test_an_owner_sets_up_payouts_and_sees_them_onboarded(
    connect: FakeStripe, committed_world: World
) -> None:
    owner = logged_in(committed_world.owner)
    page = owner.get(_url("marketplace_publish")).content.decode()
    assert "Set up payouts" in page
    assert "To sell a listing, set up payouts" in page

    # Set up payouts: an Express account, then off to Stripe's hosted onboarding
    started = owner.post(_url("marketplace_payouts_setup"), {"country": "GB"})
    link = _onboarding_url(started)
    assert link.startswith(f"{connect.url}/test/connect/onboarding/")
    account = CreatorAccount.objects.get()
    remote = connect.get(account.stripe_account_id)
    publisher = Publisher.objects.get(workspace=committed_world.workspace_a)
    assert account.publisher == publisher
    assert (remote["type"], remote["country"]) == ("express", "GB")
    assert remote["metadata"] == {"publisher_id": str(publisher.pk)}
    # outside the platform's country (US): Stripe's recipient agreement, transfers only
    assert remote["tos_acceptance"]["service_agreement"] == "recipient"
    assert remote["capabilities"] == {"transfers": "inactive"}
    assert not account.onboarded
    assert AuditEvent.objects.filter(
        action="marketplace.payouts_setup_started", workspace=committed_world.workspace_a
    ).exists()
    # a second click (or a retry) does not make a second account
    again = _onboarding_url(owner.post(_url("marketplace_payouts_setup"), {"country": "GB"}))
    assert again != link  # a fresh link to the same account
    accounts = [o for o in connect.objects.values() if o.get("_connected")]
    assert [a["id"] for a in accounts] == [account.stripe_account_id]
    assert CreatorAccount.objects.count() == 1

    # the creator sees Stripe's page, submits it, and is sent back to the platform
    onboarding = _get(again)
    assert onboarding.status == 200
    assert "Billing test mode" in onboarding.read().decode()
    submitted = _post(again + "/complete")
    back = submitted.getheader("Location", "")
    assert submitted.status == 303
    assert back == "http://testserver" + _url("marketplace_payouts_return")
    # account.updated reached the platform (before the creator is back)
    assert _delivered(connect) == [200]
    account.refresh_from_db()
    assert account.onboarded
    # a transfers-only account: Stripe never enables charges on it, and it needs none
    assert (account.transfers_active, account.payouts_enabled) == (True, True)
    assert account.charges_enabled is False
    assert connect.get(account.stripe_account_id)["capabilities"] == {"transfers": "active"}
    assert account.requirements_due == []
    assert account.synced_at is not None

    returned = owner.get(urllib.parse.urlsplit(back).path, follow=True)
    html = returned.content.decode()
    assert returned.redirect_chain[-1][0] == _url("marketplace_publish")
    assert "Payouts are set up: you can publish paid versions." in html
    assert "Your payouts account is ready" in html
    assert "It is a payouts-only account" in html  # a GB creator on a US platform
    assert "Set up payouts" not in html
    assert "Continue setup" not in html
    # the used link cannot be replayed: Stripe sends the creator to the refresh URL
    replay = _get(again)
    assert replay.status == 303
    assert replay.getheader("Location", "").endswith(_url("marketplace_payouts_refresh"))


def test_an_expired_link_is_refreshed_and_the_return_reads_the_account(
    connect: FakeStripe, committed_world: World
) -> None:
    owner = logged_in(committed_world.owner)
    first = _onboarding_url(owner.post(_url("marketplace_payouts_setup"), {"country": "US"}))
    # the platform's own country: Stripe's full agreement, still only `transfers` requested
    remote = connect.get(CreatorAccount.objects.get().stripe_account_id)
    assert remote["tos_acceptance"]["service_agreement"] == "full"
    assert remote["capabilities"] == {"transfers": "inactive"}
    connect.clock_offset = 301  # links live five minutes
    expired = _get(first)
    assert expired.status == 303
    refresh = urllib.parse.urlsplit(expired.getheader("Location", "")).path
    assert refresh == _url("marketplace_payouts_refresh")
    fresh = owner.get(refresh)
    assert fresh.status_code == 302
    assert fresh["Location"] != first
    assert _get(fresh["Location"]).status == 200

    # back without finishing: the account is re-read, and the page says what is missing
    connect.hold_events = True  # no webhook: only the return's re-read updates the status
    account = CreatorAccount.objects.get()
    connect.require(account.stripe_account_id, ["individual.dob.day", "external_account"])
    returned = owner.get(_url("marketplace_payouts_return"), follow=True)
    html = returned.content.decode()
    assert "Payouts are not set up yet: Stripe still needs the details listed." in html
    assert "<li>your date of birth</li>" in html
    assert "<li>a bank account to receive payouts</li>" in html
    assert "Continue setup" in html


def test_the_platform_country_decides_the_service_agreement(
    connect: FakeStripe, committed_world: World, settings: Any
) -> None:
    settings.STRIPE_PLATFORM_COUNTRY = "GB"
    owner = logged_in(committed_world.owner)
    page = owner.get(_url("marketplace_publish")).content.decode()
    assert "Outside United Kingdom, Stripe opens a payouts-only account" in page
    _onboarding_url(owner.post(_url("marketplace_payouts_setup"), {"country": "US"}))
    remote = connect.get(CreatorAccount.objects.get().stripe_account_id)
    assert remote["tos_acceptance"]["service_agreement"] == "recipient"  # US is abroad now
    assert remote["capabilities"] == {"transfers": "inactive"}


def test_requirements_and_a_disabled_account_are_shown_in_plain_words(
    connect: FakeStripe, committed_world: World
) -> None:
    owner = logged_in(committed_world.owner)
    owner.post(_url("marketplace_payouts_setup"))
    account = CreatorAccount.objects.get()
    connect.complete_onboarding(account.stripe_account_id)
    account.refresh_from_db()
    assert account.onboarded

    # later Stripe needs an identity document; transfers and payouts stop meanwhile (the
    # account.updated webhook re-reads it)
    connect.require(
        account.stripe_account_id,
        ["individual.verification.document"],
        disabled_reason="requirements.past_due",
    )
    account.refresh_from_db()
    assert not account.onboarded
    assert (account.transfers_active, account.payouts_enabled) == (False, False)
    assert connect.transfer_destination_error(account.stripe_account_id) is not None
    html = owner.get(_url("marketplace_publish")).content.decode()
    assert "Stripe needs the details listed below before it can pay you." in html
    assert "<li>an identity document</li>" in html
    assert "Continue setup" in html

    connect.require(account.stripe_account_id, [], disabled_reason="rejected.fraud")
    html = owner.get(_url("marketplace_publish")).content.decode()
    assert "Stripe rejected the account. Contact the platform&#x27;s support." in html
    assert "Disabled" in html


def test_account_events_three_times_out_of_order_leave_the_current_state(
    connect: FakeStripe, committed_world: World
) -> None:
    owner = logged_in(committed_world.owner)
    owner.post(_url("marketplace_payouts_setup"))
    account = CreatorAccount.objects.get()
    connect.hold_events = True
    connect.deliver_times = 3
    connect.shuffle = True
    connect.require(account.stripe_account_id, ["external_account"])
    connect.complete_onboarding(account.stripe_account_id)
    connect.flush_events()
    assert _delivered(connect) == [200] * 6
    account.refresh_from_db()
    assert account.onboarded  # the older "external_account due" event did not win
    assert account.requirements_due == []


def test_members_cannot_set_up_payouts_and_outsiders_see_nothing(
    connect: FakeStripe, committed_world: World
) -> None:
    member = logged_in(committed_world.member)
    page = member.get(_url("marketplace_publish")).content.decode()
    assert "An owner or admin of Alpha Inc sets up payouts." in page
    assert "Set up payouts</button>" not in page
    viewer_user = make_user("viewer@alpha.test")
    Membership.objects.create(
        user=viewer_user, workspace=committed_world.workspace_a, role=Role.VIEWER
    )
    viewer = logged_in(viewer_user)
    outsider = logged_in(committed_world.outsider)
    for name, method in [
        ("marketplace_payouts_setup", "post"),
        ("marketplace_payouts_refresh", "get"),
        ("marketplace_payouts_return", "get"),
    ]:
        assert getattr(member, method)(_url(name)).status_code == 403, name
        assert getattr(viewer, method)(_url(name)).status_code == 403, name
        assert getattr(outsider, method)(_url(name)).status_code == 404, name
        assert getattr(Client(), method)(_url(name)).status_code == 302, name  # to sign in
    assert viewer.get(_url("marketplace_publish")).status_code == 403
    assert not CreatorAccount.objects.exists()
    assert not [o for o in connect.objects.values() if o.get("_connected")]
    # an admin may
    admin_user = make_user("admin@alpha.test")
    Membership.objects.create(
        user=admin_user, workspace=committed_world.workspace_a, role=Role.ADMIN
    )
    assert _onboarding_url(logged_in(admin_user).post(_url("marketplace_payouts_setup")))


def test_billing_off_replaces_the_button_with_a_message(
    committed_world: World, settings: Any
) -> None:
    settings.STRIPE_TEST_SECRET_KEY = ""
    settings.STRIPE_LIVE_SECRET_KEY = ""
    settings.STRIPE_LIVE_MODE = False
    owner = logged_in(committed_world.owner)
    html = owner.get(_url("marketplace_publish")).content.decode()
    assert "Paid listings are not available here." in html
    assert "set STRIPE_TEST_SECRET_KEY to turn it on" in html
    assert "Set up payouts</button>" not in html
    refused = owner.post(_url("marketplace_payouts_setup"))
    assert refused.status_code == 503
    assert "Billing is off: set STRIPE_TEST_SECRET_KEY" in refused.content.decode()
    assert not CreatorAccount.objects.exists()


def test_stripe_down_is_a_503_that_says_so(connect: FakeStripe, committed_world: World) -> None:
    owner = logged_in(committed_world.owner)
    connect.fail_next("/v1/accounts", status=500, times=3)  # the client retries twice
    refused = owner.post(_url("marketplace_payouts_setup"))
    assert refused.status_code == 503
    assert "Stripe refused to create your payouts account" in refused.content.decode()
    assert not CreatorAccount.objects.exists()
    # it comes back: the same click works, and makes one account
    assert _onboarding_url(owner.post(_url("marketplace_payouts_setup")))
    assert CreatorAccount.objects.count() == 1
    connect.fail_next("/v1/account_links", status=503, times=3)
    refresh = owner.get(_url("marketplace_payouts_refresh"))
    assert refresh.status_code == 503
    assert "Stripe refused to open the payouts setup" in refresh.content.decode()
    # the return page still answers, with a warning, while Stripe is unreachable
    account = CreatorAccount.objects.get()
    connect.fail_next(f"/v1/accounts/{account.stripe_account_id}", status=500, times=3)
    back = owner.get(_url("marketplace_payouts_return"), follow=True)
    assert back.status_code == 200
    assert "Your payouts status will update shortly." in back.content.decode()


# --- the fake's Connect endpoints, through the real SDK -------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake
    assert fake.server_errors == []


def _client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_x", base_addresses={"api": fake.base_url}, max_network_retries=0
    )


def test_fake_accounts_round_trip_apart_from_the_platforms(fake: FakeStripe) -> None:
    client = _client(fake)
    params: Any = {
        "type": "express",
        "country": "DE",
        "capabilities": {"transfers": {"requested": True}},
        "tos_acceptance": {"service_agreement": "recipient"},
        "metadata": {"publisher_id": "7"},
    }
    created = client.v1.accounts.create(
        params=params, options={"idempotency_key": "creator-account-7"}
    )
    replay = client.v1.accounts.create(
        params=params, options={"idempotency_key": "creator-account-7"}
    )
    assert replay.id == created.id
    assert created.id.startswith("acct_")
    assert (created.charges_enabled, created.payouts_enabled, created.details_submitted) == (
        False,
        False,
        False,
    )
    assert created.requirements.currently_due  # Stripe asks for details first
    platform = client.v1.accounts.retrieve_current()
    assert platform.id != created.id
    assert [a.id for a in client.v1.accounts.list().data] == [created.id]
    assert client.v1.accounts.retrieve(created.id).metadata["publisher_id"] == "7"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.accounts.retrieve(platform.id)  # the platform's is not a connected account

    updated = client.v1.accounts.update(created.id, params={"metadata": {"note": "x"}})
    assert updated.metadata.to_dict() == {"publisher_id": "7", "note": "x"}
    (event,) = [e for e in fake.events if e["type"] == "account.updated"]
    assert event["data"]["previous_attributes"] == {"metadata": {"publisher_id": "7"}}

    with pytest.raises(stripe.InvalidRequestError, match="not completed onboarding"):
        client.v1.accounts.login_links.create(created.id)
    done = fake.complete_onboarding(created.id)
    # only what was asked for is active; no card_payments, so charges stay disabled
    assert (done["charges_enabled"], done["payouts_enabled"], done["details_submitted"]) == (
        False,
        True,
        True,
    )
    assert done["capabilities"] == {"transfers": "active"}
    assert done["requirements"]["currently_due"] == []
    assert fake.events[-1]["type"] == "account.updated"
    previous = fake.events[-1]["data"]["previous_attributes"]
    assert previous["capabilities"] == {"transfers": "inactive"}
    assert previous["payouts_enabled"] is False
    login = client.v1.accounts.login_links.create(created.id)
    assert _get(login.url).status == 200


def test_fake_capabilities_agreements_and_who_may_receive_transfers(fake: FakeStripe) -> None:
    client = _client(fake)
    # a full account asking for card payments too: charges are enabled once onboarded
    both = client.v1.accounts.create(
        params={
            "type": "express",
            "country": "US",
            "capabilities": {
                "card_payments": {"requested": True},
                "transfers": {"requested": True},
            },
        }
    )
    assert both.tos_acceptance.service_agreement == "full"
    done = fake.complete_onboarding(both.id)
    assert done["charges_enabled"] is True
    assert done["capabilities"] == {"card_payments": "active", "transfers": "active"}
    # the recipient agreement cannot take card payments; cross-border needs it
    with pytest.raises(stripe.InvalidRequestError, match="card_payments") as caught:
        client.v1.accounts.create(
            params={
                "type": "express",
                "country": "FR",
                "capabilities": {"card_payments": {"requested": True}},
                "tos_acceptance": {"service_agreement": "recipient"},
            }
        )
    assert caught.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError, match="recipient") as caught:
        client.v1.accounts.create(
            params={
                "type": "express",
                "country": "GB",
                "capabilities": {"transfers": {"requested": True}},
            }
        )
    assert caught.value.param == "tos_acceptance[service_agreement]"

    # transfers: not to an account the platform does not have, nor to one not onboarded yet
    def send(destination: str) -> Any:
        return client.v1.transfers.create(
            params={"amount": 700, "currency": "usd", "destination": destination}
        )

    with pytest.raises(stripe.InvalidRequestError, match="No such destination") as caught:
        send("acct_nobodyknows")
    assert (caught.value.http_status, caught.value.code) == (400, "resource_missing")
    waiting = client.v1.accounts.create(
        params={"type": "express", "capabilities": {"transfers": {"requested": True}}}
    )
    with pytest.raises(stripe.InvalidRequestError, match="capabilities enabled") as caught:
        send(waiting.id)
    assert (caught.value.http_status, caught.value.code) == (
        400,
        "insufficient_capabilities_for_transfer",
    )
    fake.complete_onboarding(waiting.id)
    assert send(waiting.id).amount == 700
    assert fake.balance_of(waiting.id) == 700
    # restricted later: refused again
    fake.require(waiting.id, ["individual.dob.day"], disabled_reason="requirements.past_due")
    assert fake.get(waiting.id)["capabilities"] == {"transfers": "inactive"}
    with pytest.raises(stripe.InvalidRequestError, match="capabilities enabled"):
        send(waiting.id)
    assert fake.balance_of(waiting.id) == 700

    # a test's own stored id, onboarded, directly or over HTTP (tests/helpers/money.py)
    seeded = fake.connected_account("acct_storedbyatest")
    assert (seeded["id"], seeded["capabilities"]) == ("acct_storedbyatest", {"transfers": "active"})
    assert _post(f"{fake.url}/test/connect/accounts/acct_overhttp").status == 200
    assert send("acct_overhttp").destination == "acct_overhttp"
    abroad = fake.connected_account(country="IE", onboarded=False)
    assert abroad["tos_acceptance"]["service_agreement"] == "recipient"
    with pytest.raises(stripe.InvalidRequestError, match="capabilities enabled"):
        send(abroad["id"])


def test_fake_account_links_open_a_test_onboarding_page(fake: FakeStripe) -> None:
    client = _client(fake)
    account = client.v1.accounts.create(params={"type": "express"})
    with pytest.raises(stripe.InvalidRequestError, match="refresh_url"):
        client.v1.account_links.create(
            params={"account": account.id, "type": "account_onboarding", "return_url": "x"}
        )
    link = client.v1.account_links.create(
        params={
            "account": account.id,
            "type": "account_onboarding",
            "refresh_url": "https://app.test/refresh",
            "return_url": "https://app.test/back",
        }
    )
    assert link.expires_at > link.created
    page = _get(link.url)
    assert page.status == 200
    html = page.read().decode()
    assert "Billing test mode — no real money" in html
    assert "external_account" in html  # what Stripe would ask for
    done = _post(link.url + "/complete")
    assert (done.status, done.getheader("Location")) == (303, "https://app.test/back")
    assert fake.get(account.id)["payouts_enabled"] is True
    used = _get(link.url)
    assert (used.status, used.getheader("Location")) == (303, "https://app.test/refresh")
    assert _get(f"{fake.url}/test/connect/onboarding/acctlink_nope").status == 404

    fake.fail_next("/v1/account_links", status=500)
    with pytest.raises(stripe.APIError):
        client.v1.account_links.create(
            params={
                "account": account.id,
                "type": "account_onboarding",
                "refresh_url": "https://app.test/refresh",
                "return_url": "https://app.test/back",
            }
        )


def test_fake_requirements_and_a_disabled_account(fake: FakeStripe) -> None:
    client = _client(fake)
    account = client.v1.accounts.create(params={"type": "express"})
    fake.complete_onboarding(account.id)
    fake.require(account.id, ["individual.dob.day"], disabled_reason="requirements.past_due")
    again = client.v1.accounts.retrieve(account.id)
    assert again.requirements.currently_due == ["individual.dob.day"]
    assert again.requirements.past_due == ["individual.dob.day"]
    assert again.requirements.disabled_reason == "requirements.past_due"
    assert (again.charges_enabled, again.payouts_enabled) == (False, False)
    assert again.capabilities.to_dict() == {}  # nothing was requested
    assert again.details_submitted is True


@pytest.mark.django_db
def test_the_demo_creator_is_onboarded_against_the_emulator(
    world: World, fake_stripe: FakeStripe, settings: Any
) -> None:
    publisher = Publisher.objects.create(slug="demo-creator", display_name="Demo Creator")
    account = demo_creator_account(publisher=publisher)
    assert account is not None
    assert account.onboarded
    remote = fake_stripe.get(account.stripe_account_id)
    assert (remote["payouts_enabled"], remote["capabilities"]) == (True, {"transfers": "active"})
    assert account.transfers_active
    assert not account.charges_enabled
    assert demo_creator_account(publisher=publisher) == account  # idempotent
    assert CreatorAccount.objects.count() == 1
    settings.STRIPE_TEST_SECRET_KEY = ""
    other = Publisher.objects.create(slug="other", display_name="Other")
    assert demo_creator_account(publisher=other) is None  # billing off: no account
