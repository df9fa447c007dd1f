"""FakeStripe speaks Stripe's API well enough for the real `stripe` SDK: objects round trip,
errors come in Stripe's envelope, idempotency keys replay, checkout completes into a
subscription with signed webhooks, meter events are deduplicated and summed."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from tests.fakes import FakeStripe
from tests.fakes.webhook_receiver import WebhookReceiver

SECRET = "whsec_test_secret"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def verified_events(receiver: WebhookReceiver) -> list[stripe.Event]:
    """The received deliveries, each verified the way our webhook view will verify it."""
    return [
        stripe.Webhook.construct_event(
            hit["body"].decode(), hit["headers"]["stripe-signature"], SECRET
        )
        for hit in receiver.received
    ]


def plan(client: stripe.StripeClient, *, lookup_key: str = "pro_monthly") -> stripe.Price:
    product = client.v1.products.create(params={"name": "Pro", "metadata": {"tier": "pro"}})
    return client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 2000,
            "recurring": {"interval": "month"},
            "lookup_key": lookup_key,
        }
    )


def subscribe(client: stripe.StripeClient, fake: FakeStripe, price: stripe.Price) -> Any:
    customer = client.v1.customers.create(params={"email": "a@example.com"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://app.example/ok?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://app.example/cancel",
        }
    )
    return fake.complete_checkout(session.id)


def test_customer_product_price_round_trip_with_lookup_key_filter(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    customer = client.v1.customers.create(
        params={"email": "a@example.com", "metadata": {"tenant": "t1"}}
    )
    assert customer.id.startswith("cus_")
    updated = client.v1.customers.update(customer.id, params={"metadata": {"plan": "pro"}})
    assert updated.metadata.to_dict() == {"tenant": "t1", "plan": "pro"}
    assert client.v1.customers.retrieve(customer.id).email == "a@example.com"

    price = plan(client)
    plan(client, lookup_key="team_monthly")
    assert price.recurring is not None
    assert price.recurring.interval == "month"
    assert price.unit_amount == 2000
    found = client.v1.prices.list(params={"lookup_keys": ["pro_monthly"]})
    assert [p.id for p in found.data] == [price.id]
    assert client.v1.products.retrieve(price.product).metadata["tier"] == "pro"
    assert fake.last_request.api_key == "sk_test_x"


def test_unknown_id_is_a_404_in_stripes_envelope(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.retrieve("cus_missing")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    assert caught.value.param == "id"


def test_a_request_without_a_key_is_a_401(fake: FakeStripe) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(fake.base_url + "/v1/customers", timeout=5)  # noqa: S310
    assert caught.value.code == 401
    assert json.loads(caught.value.read())["error"]["type"] == "invalid_request_error"


def test_idempotency_key_replays_and_refuses_other_parameters(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    first = client.v1.customers.create(
        params={"email": "a@example.com"}, options={"idempotency_key": "k1"}
    )
    again = client.v1.customers.create(
        params={"email": "a@example.com"}, options={"idempotency_key": "k1"}
    )
    assert again.id == first.id
    assert len(client.v1.customers.list().data) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(
            params={"email": "b@example.com"}, options={"idempotency_key": "k1"}
        )


def test_checkout_completes_into_an_active_subscription_with_signed_webhooks(
    receiver: WebhookReceiver,
) -> None:
    with FakeStripe(webhook_url=receiver.url, webhook_secret=SECRET) as fake:
        client = fake.sdk_client()
        price = plan(client)
        customer = client.v1.customers.create(params={"email": "a@example.com"})
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer": customer.id,
                "line_items": [{"price": price.id, "quantity": 2}],
                "success_url": "https://app.example/ok",
                "cancel_url": "https://app.example/cancel",
            }
        )
        assert session.url is not None
        assert session.url.startswith(fake.url + "/test/checkout/")
        receiver.received.clear()

        fake.complete_checkout(session.id)

        done = client.v1.checkout.sessions.retrieve(session.id)
        assert done.status == "complete"
        assert done.subscription is not None
        subscription = client.v1.subscriptions.retrieve(str(done.subscription))
        assert subscription.status == "active"
        assert subscription.customer == customer.id
        assert subscription["items"].data[0].price.id == price.id
        invoice = client.v1.invoices.retrieve(str(subscription.latest_invoice))
        assert invoice.status == "paid"
        assert invoice.amount_paid == 4000
        listed = client.v1.subscriptions.list(params={"customer": customer.id})
        assert [s.id for s in listed.data] == [subscription.id]
        portal = client.v1.billing_portal.sessions.create(
            params={"customer": customer.id, "return_url": "https://app.example/billing"}
        )
        assert portal.url.startswith(fake.url + "/test/portal/")
        paid = client.v1.events.list(params={"type": "invoice.paid"}).data
        assert [e.data.object["id"] for e in paid] == [invoice.id]
    events = verified_events(receiver)
    assert [e.type for e in events] == [
        "customer.subscription.created",
        "invoice.paid",
        "checkout.session.completed",
    ]
    assert events[2].data.object["subscription"] == subscription.id
    assert [e.id for e in events] == [e["id"] for e in fake.events[-3:]]


def test_the_checkout_page_pays_and_redirects_to_success_url(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    price = plan(client)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer_email": "new@example.com",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://app.example/ok?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://app.example/cancel",
        }
    )
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    connection.request("GET", f"/test/checkout/{session.id}")
    page = connection.getresponse().read().decode()
    assert f'action="/test/checkout/{session.id}/complete"' in page

    connection.request("POST", f"/test/checkout/{session.id}/complete")
    response = connection.getresponse()
    response.read()
    assert response.status == 303
    assert response.getheader("Location") == f"https://app.example/ok?session={session.id}"
    done = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["subscription", "customer"]}
    )
    assert done.subscription.status == "active"
    assert done.customer.email == "new@example.com"
    assert [key for key in done.to_dict() if key.startswith("_")] == []  # no fake internals


def test_close_period_bills_or_fails_and_cancel_at_period_end_ends(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    subscription = subscribe(client, fake, plan(client))
    first_end = subscription["items"]["data"][0]["current_period_end"]

    failed = fake.close_period(subscription["id"], fail=True)
    assert failed is not None
    assert failed["status"] == "open"
    after = client.v1.subscriptions.retrieve(subscription["id"])
    assert after.status == "past_due"
    assert after["items"].data[0].current_period_start == first_end
    assert [e["type"] for e in fake.events[-3:]] == [
        "invoice.created",
        "invoice.payment_failed",
        "customer.subscription.updated",
    ]

    client.v1.subscriptions.update(subscription["id"], params={"cancel_at_period_end": True})
    assert fake.close_period(subscription["id"]) is None
    assert client.v1.subscriptions.retrieve(subscription["id"]).status == "canceled"
    assert fake.events[-1]["type"] == "customer.subscription.deleted"
    customer = subscription["customer"]
    assert client.v1.subscriptions.list(params={"customer": customer}).data == []
    everything = client.v1.subscriptions.list(params={"customer": customer, "status": "all"})
    assert [s.id for s in everything.data] == [subscription["id"]]


def test_meter_events_are_deduplicated_and_summed(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    meter = client.v1.billing.meters.create(
        params={
            "display_name": "Agent runs",
            "event_name": "agent_run",
            "default_aggregation": {"formula": "sum"},
        }
    )
    now = int(time.time())
    for identifier, value in [("run-1", 3), ("run-2", 4)]:
        client.v1.billing.meter_events.create(
            params={
                "event_name": "agent_run",
                "payload": {"stripe_customer_id": "cus_a", "value": str(value)},
                "identifier": identifier,
                "timestamp": now - 60,
            }
        )
    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        client.v1.billing.meter_events.create(
            params={
                "event_name": "agent_run",
                "payload": {"stripe_customer_id": "cus_a", "value": "100"},
                "identifier": "run-1",
            }
        )
    assert duplicate.value.http_status == 400
    assert duplicate.value.param == "identifier"
    for too_old_or_too_new in (now - 36 * 86400, now + 600):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.billing.meter_events.create(
                params={
                    "event_name": "agent_run",
                    "payload": {"stripe_customer_id": "cus_a", "value": "1"},
                    "timestamp": too_old_or_too_new,
                }
            )
        assert refused.value.param == "timestamp"
    summaries = client.v1.billing.meters.event_summaries.list(
        meter.id, params={"customer": "cus_a", "start_time": now - 3600, "end_time": now + 60}
    )
    assert [s.aggregated_value for s in summaries.data] == [7]


def test_deliver_twice_and_shuffle(receiver: WebhookReceiver) -> None:
    with FakeStripe(
        webhook_url=receiver.url, webhook_secret=SECRET, deliver_twice=True, seed=3
    ) as fake:
        client = fake.sdk_client()
        client.v1.customers.create(params={"email": "a@example.com"})
    ids = [e.id for e in verified_events(receiver)]
    assert len(ids) == 2
    assert ids[0] == ids[1]

    receiver.received.clear()
    with FakeStripe(
        webhook_url=receiver.url, webhook_secret=SECRET, shuffle=True, hold_events=True, seed=1
    ) as fake:
        client = fake.sdk_client()
        for n in range(3):
            subscribe(client, fake, plan(client, lookup_key=f"plan_{n}"))
        assert receiver.received == []  # held until flushed
        emitted = [e["id"] for e in fake.events]
        fake.flush_events()
        delivered = [e.id for e in verified_events(receiver)]
    assert sorted(delivered) == sorted(emitted)
    assert delivered != emitted


def test_a_failed_delivery_is_retried(receiver: WebhookReceiver) -> None:
    receiver.statuses = [500]
    with FakeStripe(webhook_url=receiver.url, webhook_secret=SECRET) as fake:
        fake.sdk_client().v1.customers.create(params={"email": "a@example.com"})
    assert [d.status for d in fake.deliveries] == [500, 200]
    assert len({e.id for e in verified_events(receiver)}) == 1


def test_webhook_endpoints_get_the_events_they_enable_signed_with_their_own_secret(
    receiver: WebhookReceiver,
) -> None:
    with (
        WebhookReceiver() as other,
        FakeStripe(webhook_url=other.url, webhook_secret=SECRET, deliver_times=3) as fake,
    ):
        client = fake.sdk_client()
        created = client.v1.webhook_endpoints.create(
            params={"url": receiver.url, "enabled_events": ["customer.created"]}
        )
        assert (created.secret or "").startswith("whsec_")
        listed = client.v1.webhook_endpoints.list().data
        assert [e.id for e in listed] == [created.id]
        assert "secret" not in client.v1.webhook_endpoints.retrieve(created.id)
        client.v1.products.create(params={"name": "Not enabled"})
        client.v1.customers.create(params={"email": "a@example.com"})
    assert [
        stripe.Webhook.construct_event(
            hit["body"].decode(), hit["headers"]["stripe-signature"], created.secret
        ).type
        for hit in receiver.received
    ] == ["customer.created"] * 3
    assert len(verified_events(other)) == 6  # webhook_url still gets every event, 3 times


def test_paying_an_open_invoice_makes_a_past_due_subscription_active(fake: FakeStripe) -> None:
    client = fake.sdk_client()
    subscription = subscribe(client, fake, plan(client))
    invoice = fake.close_period(subscription["id"], fail=True)
    assert invoice is not None
    assert client.v1.subscriptions.retrieve(subscription["id"]).status == "past_due"
    paid = client.v1.invoices.pay(invoice["id"])
    assert paid.status == "paid"
    assert client.v1.subscriptions.retrieve(subscription["id"]).status == "active"
    assert [e["type"] for e in fake.events[-2:]] == [
        "invoice.paid",
        "customer.subscription.updated",
    ]
