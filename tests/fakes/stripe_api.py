"""A loopback fake of the Stripe HTTP API (the billing subset we use), for the real `stripe` SDK.

    with FakeStripe(webhook_url=receiver.url, webhook_secret="whsec_test") as fake:
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": fake.base_url}, max_network_retries=0
        )
        session = client.v1.checkout.sessions.create(params={...})
        fake.complete_checkout(session.id)  # subscription + paid invoice + signed webhooks

Every object starts as a deep copy of Stripe's own example object (`fixtures3.json`, MIT,
in tests/fakes/stripe_fixtures/) with our ids and fields set on top, so responses carry every field
the SDK and our code may read. State is in memory and lives as long as the fake. Requests are
form-encoded with bracket notation (`metadata[k]=v`, `items[0][price]=…`, `expand[0]=…`) in
the body (POST) or the query string (GET, DELETE); see `decode_form`.

Invariant: an `Idempotency-Key` replays the stored response byte for byte (status and body)
when the method, path and parameters are the same, and is a 400 `idempotency_error`
otherwise, as Stripe does.
"""

from __future__ import annotations

import calendar
import copy
import hashlib
import hmac
import html
import json
import random
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import stripe

from tests.fakes.server import Exchange, FakeServer, RecordedRequest
from tests.fakes.stripe_connect import StripeConnectMixin
from tests.fakes.stripe_fees import ApplicationFeesMixin
from tests.fakes.stripe_money import StripeMoneyMixin
from tests.fakes.stripe_payments import PaymentsMixin

# Stripe's example objects from its OpenAPI repository (MIT: stripe_fixtures/LICENSE).
FIXTURES = Path(__file__).with_name("stripe_fixtures") / "fixtures3.json"

METER_EVENT_MAX_AGE = 35 * 24 * 3600
METER_EVENT_MAX_FUTURE = 5 * 60
METER_EVENT_DEDUP_WINDOW = 24 * 3600

Object = dict[str, Any]


@lru_cache(maxsize=1)
def stripe_fixtures() -> Mapping[str, Object]:
    """Stripe's example objects by resource name ("customer", "checkout.session", …)."""
    if not FIXTURES.is_file():
        raise FileNotFoundError(f"FakeStripe needs Stripe's example objects at {FIXTURES}")
    resources: Mapping[str, Object] = json.loads(FIXTURES.read_text())["resources"]
    return resources


def fixture(resource: str) -> Object:
    return copy.deepcopy(stripe_fixtures()[resource])


def decode_form(pairs: list[tuple[str, str]]) -> Object:
    """`a[b][0][c]=v` pairs into nested dicts; a dict whose keys are all indexes (or `[]`
    appends) becomes a list."""
    root: Object = {}
    for key, value in pairs:
        parts = [key.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", key)]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part or str(len(node)), {})
        last = parts[-1] if parts[-1] != "" else str(len(node))
        node[last] = value
    return _listify(root)


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    items = {key: _listify(item) for key, item in value.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def _bool(value: Any) -> bool:
    return value is True or value == "true"


def _int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StripeError(400, f"Invalid integer: {value}", param=param) from None


def _tiered_amount(tiers: list[tuple[int | None, Decimal, int]], mode: str, units: int) -> int:
    """Cents for `units` on tiered pricing, rounded half up once, as Stripe rounds a line:
    graduated charges each tier's share at its price, volume all units at the price of the
    tier the total falls in."""
    total, below = Decimal(0), 0
    for up_to, unit, flat in tiers:
        if mode == "volume":
            if up_to is None or units <= up_to:
                total = units * unit + flat
                break
            continue
        in_tier = (units if up_to is None else min(units, up_to)) - below
        if in_tier > 0:
            total += in_tier * unit + flat
        below = up_to if up_to is not None else below
    return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _add_interval(timestamp: int, interval: str, count: int) -> int:
    if interval == "day":
        return timestamp + 86400 * count
    if interval == "week":
        return timestamp + 7 * 86400 * count
    moment = datetime.fromtimestamp(timestamp, UTC)
    months = moment.month - 1 + (count * 12 if interval == "year" else count)
    year, month = moment.year + months // 12, months % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


class StripeError(Exception):
    """An error answered in Stripe's envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param

    def envelope(self) -> Object:
        error: Object = {"type": self.error_type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


@dataclass(frozen=True)
class Delivery:
    """One attempt to post an event to the webhook URL (`status` 0: connection failed)."""

    event_id: str
    event_type: str
    status: int
    attempt: int


Handler = Callable[[RecordedRequest, Object, "re.Match[str]"], tuple[int, Object]]


class FakeStripe(
    StripeConnectMixin, StripeMoneyMixin, PaymentsMixin, ApplicationFeesMixin, FakeServer
):
    """Fake of https://api.stripe.com. `base_url` is `http://127.0.0.1:PORT` (the SDK adds
    `/v1/...`). Test-only pages and endpoints live under `/test/` and need no key."""

    base_path: ClassVar[str] = ""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str = "whsec_fake",  # noqa: S107 - a test secret
        deliver_twice: bool = False,
        deliver_times: int = 1,
        shuffle: bool = False,
        hold_events: bool = False,
        max_delivery_attempts: int = 3,
        seed: int | None = None,
    ) -> None:
        """`webhook_url`: where each event is posted, signed with `webhook_secret` as Stripe
        does; None collects events only (`fake.events`). `deliver_twice`: post every event
        twice. `shuffle`: deliver each batch of events (one API call's worth, or one
        `flush_events()`) in random order. `hold_events`: deliver only on `flush_events()`.
        A delivery answered with a non-2xx (or failing to connect) is retried at once, up to
        `max_delivery_attempts` in all. `seed`: for `shuffle` and ids. `deliver_times`: post
        every event this many times (`deliver_twice` is 2); with `shuffle` the copies are
        shuffled too.

        Endpoints created through the API (`POST /v1/webhook_endpoints`) get every event
        they enable, signed with their own secret, besides `webhook_url`; those created with
        `connect=true` get the connected accounts' events instead of the platform's."""
        if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url must be an http(s) URL, not {webhook_url!r}")
        super().__init__(api_key=api_key, strict=True)
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.deliver_twice = deliver_twice
        self.deliver_times = deliver_times
        self.shuffle = shuffle
        self.hold_events = hold_events
        self.max_delivery_attempts = max_delivery_attempts
        # Called after each delivery the platform accepted: a test runs the platform's workers
        # there (the view only stores and queues; tests/helpers/billing.py `workers_run`).
        self.after_delivery: Callable[[], None] | None = None
        self.clock_offset = 0
        self.events: list[Object] = []
        self.deliveries: list[Delivery] = []
        self.objects: dict[str, Object] = {}
        self.meter_events: list[Object] = []
        self._random = random.Random(seed)
        self._state = threading.RLock()
        self._outbox: list[Object] = []
        self._idempotent: dict[tuple[str | None, str], tuple[str, int, bytes]] = {}
        self._faults: dict[str, list[tuple[int, str]]] = {}
        self._delays: dict[str, list[float]] = {}
        self._tiers: dict[str, list[tuple[int | None, Decimal, int]]] = {}  # price id → tiers
        self._holds: dict[str, int] = {}
        self.holding = threading.Event()  # set while a held response waits (see `hold_after`)
        self._released = threading.Event()
        self._api_version: str | None = None
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (method, re.compile(pattern + r"\Z"), handler)
            for method, pattern, handler in [
                ("POST", r"/v1/customers", self._customer_create),
                ("GET", r"/v1/customers", self._list_of("customer")),
                ("GET", r"/v1/customers/(?P<id>[^/]+)", self._retrieve("customer")),
                ("POST", r"/v1/customers/(?P<id>[^/]+)", self._update("customer")),
                ("POST", r"/v1/products", self._product_create),
                ("GET", r"/v1/products", self._list_of("product")),
                ("GET", r"/v1/products/(?P<id>[^/]+)", self._retrieve("product")),
                ("POST", r"/v1/products/(?P<id>[^/]+)", self._update("product")),
                ("GET", r"/v1/products/(?P<id>[^/]+)/features", self._product_features),
                ("POST", r"/v1/prices", self._price_create),
                ("GET", r"/v1/prices", self._price_list),
                ("GET", r"/v1/prices/(?P<id>[^/]+)", self._retrieve("price")),
                ("POST", r"/v1/checkout/sessions", self._checkout_create),
                ("GET", r"/v1/checkout/sessions/(?P<id>[^/]+)", self._retrieve("checkout.session")),
                ("POST", r"/v1/checkout/sessions/(?P<id>[^/]+)/expire", self._checkout_expire),
                ("POST", r"/v1/billing_portal/sessions", self._portal_create),
                ("GET", r"/v1/subscriptions", self._subscription_list),
                ("GET", r"/v1/subscriptions/(?P<id>[^/]+)", self._retrieve("subscription")),
                ("POST", r"/v1/subscriptions/(?P<id>[^/]+)/resume", self._subscription_resume),
                ("POST", r"/v1/subscriptions/(?P<id>[^/]+)", self._subscription_update),
                ("DELETE", r"/v1/subscriptions/(?P<id>[^/]+)", self._subscription_cancel),
                ("GET", r"/v1/invoices", self._list_of("invoice", "customer", "subscription")),
                ("GET", r"/v1/invoices/(?P<id>[^/]+)", self._retrieve("invoice")),
                ("POST", r"/v1/invoices/(?P<id>[^/]+)/pay", self._invoice_pay),
                ("GET", r"/v1/account", self._account),
                ("POST", r"/v1/webhook_endpoints", self._webhook_endpoint_create),
                ("GET", r"/v1/webhook_endpoints", self._list_of("webhook_endpoint")),
                (
                    "GET",
                    r"/v1/webhook_endpoints/(?P<id>[^/]+)",
                    self._retrieve("webhook_endpoint"),
                ),
                ("POST", r"/v1/webhook_endpoints/(?P<id>[^/]+)", self._webhook_endpoint_update),
                ("DELETE", r"/v1/webhook_endpoints/(?P<id>[^/]+)", self._webhook_endpoint_delete),
                ("POST", r"/v1/billing/meters", self._meter_create),
                ("GET", r"/v1/billing/meters", self._list_of("billing.meter")),
                ("GET", r"/v1/billing/meters/(?P<id>[^/]+)", self._retrieve("billing.meter")),
                ("POST", r"/v1/billing/meter_events", self._meter_event_create),
                ("GET", r"/v1/billing/meters/(?P<id>[^/]+)/event_summaries", self._summaries),
                ("GET", r"/v1/events", self._list_of("event", "type")),
                ("GET", r"/v1/events/(?P<id>[^/]+)", self._retrieve("event")),
                *self._connect_routes(),
                *self._money_routes(),
                *self._payments_routes(),
                *self._fees_routes(),
            ]
        ]

    # -- protocol -------------------------------------------------------------------------

    def key_of(self, headers: Mapping[str, str]) -> str | None:
        """`Authorization: Bearer sk_…`."""
        value = headers.get("authorization", "")
        key = value[len("Bearer ") :].strip() if value.startswith("Bearer ") else ""
        return key or None

    def auth_error(self, request: RecordedRequest) -> str | None:
        if not request.api_key:
            return (
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY')."
            )
        if self.api_key is not None and request.api_key != self.api_key:
            return f"Invalid API Key provided: {request.api_key[:8]}****"
        return None

    def send_error(
        self,
        out: Exchange,
        status: int,
        *,
        message: str | None = None,
        error_type: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        error = StripeError(
            status,
            message or "Error",
            error_type=error_type or ("api_error" if status >= 500 else "invalid_request_error"),
            code=code,
        )
        out.send_json(status, error.envelope(), headers=self._response_headers(headers))

    def _response_headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Request-Id": f"req_{secrets.token_hex(7)}"}
        if self._api_version:
            headers["Stripe-Version"] = self._api_version
        headers.update(extra or {})
        return headers

    def dispatch(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        split = urlsplit(handler.path)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        if raw:
            pairs += parse_qsl(raw.decode(), keep_blank_values=True)
        params = decode_form(pairs)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        request = RecordedRequest(
            method=handler.command,
            path=split.path,
            query={},
            headers=headers,
            body=params,
            raw=raw,
            endpoint=None,
            api_key=self.key_of(headers),
        )
        with self._lock:
            self.requests.append(request)
        out = Exchange(handler, self)
        if split.path.startswith("/test/"):
            self._test_request(handler.command, split.path, params, out)
            return
        route = self._route(handler.command, split.path)
        if route is None:
            self.send_error(
                out, 404, message=f"Unrecognized request URL ({handler.command}: {split.path})."
            )
            return
        target, match = route
        problem = self.auth_error(request)
        if problem is not None:
            self.send_error(out, 401, message=problem)
            return
        if self._slow_now(split.path):
            return  # the fake stopped while Stripe was being slow: no answer
        with self._state:
            faults = self._faults.get(split.path)
            fault = faults.pop(0) if faults else None
        if fault is not None:
            self.send_error(out, fault[0], message=fault[1])
            return
        self._api_version = headers.get("stripe-version") or self._api_version
        key = headers.get("idempotency-key") if handler.command == "POST" else None
        fingerprint = json.dumps([handler.command, split.path, params], sort_keys=True)
        with self._state:
            stored = self._idempotent.get((request.api_key, key)) if key else None
            if stored is not None and stored[0] != fingerprint:
                error = StripeError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with. Try using a key other than "
                    f"'{key}' if you meant to execute a different request.",
                    error_type="idempotency_error",
                )
                status, body = 400, json.dumps(error.envelope()).encode()
            elif stored is not None:
                status, body = stored[1], stored[2]
            else:
                try:
                    status, payload = target(request, params, match)
                    for path in params.get("expand") or []:
                        self._expand(payload, path.split("."))
                except StripeError as exc:
                    status, payload = exc.status, exc.envelope()
                body = json.dumps(payload).encode()
                if key and status < 500:
                    self._idempotent[(request.api_key, key)] = (fingerprint, status, body)
        if self._hold_now(split.path):
            return  # the test stopped the fake: the caller never hears back
        extra = {"Idempotency-Key": key} if key else {}
        if stored is not None and stored[0] == fingerprint:
            extra["Idempotent-Replayed"] = "true"
        # Delivered before the response, so a test sees the webhooks once the SDK call
        # returns (real Stripe may also deliver before the caller has the response).
        if not self.hold_events:
            self.flush_events()
        out.send_bytes(status, body, headers=self._response_headers(extra))

    # -- failure knobs ------------------------------------------------------------------------

    def fail_next(
        self, path: str, *, status: int = 500, times: int = 1, message: str | None = None
    ) -> None:
        """Answer the next `times` requests to `path` (e.g. `/v1/billing/meter_events`) with
        `status` in Stripe's error envelope, before doing anything (nothing is stored)."""
        text = message or ("An unknown error occurred." if status >= 500 else "Bad request.")
        with self._state:
            self._faults.setdefault(path, []).extend([(status, text)] * times)

    def delay_next(self, path: str, seconds: float, *, times: int = 1) -> None:
        """Wait `seconds` before handling each of the next `times` requests to `path` (a slow
        Stripe, for client timeouts); the request is then carried out as usual (a caller that
        gave up and retries with its idempotency key gets the same object). Stopping the fake
        cuts the wait short, without an answer."""
        with self._state:
            self._delays.setdefault(path, []).extend([seconds] * times)

    def _slow_now(self, path: str) -> bool:
        """Wait here if `delay_next` asked for it; True when the fake stopped meanwhile."""
        with self._state:
            delays = self._delays.get(path)
            delay = delays.pop(0) if delays else 0.0
        if delay <= 0:
            return False
        self.sleep(delay)
        return self._stopping.is_set()

    def forget_idempotency_keys(self) -> None:
        """Stripe keeps an idempotency key for 24 hours: after that, the same key makes a new
        object. This forgets every key, as if a day had passed."""
        with self._state:
            self._idempotent.clear()

    def hold_after(self, path: str, count: int) -> None:
        """Answer `count` requests to `path`, then carry out the next one (its effect is
        stored, as Stripe would) but hold its response: `holding` is set, and the response
        goes out only after `release()` (or never, once the fake stops). For killing a client
        after Stripe accepted a request and before it heard the answer."""
        with self._state:
            self._holds[path] = count
        self.holding.clear()
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def _hold_now(self, path: str) -> bool:
        """Wait here if this request is the held one; True when the fake stopped meanwhile."""
        with self._state:
            left = self._holds.get(path)
            if left is None:
                return False
            if left > 0:
                self._holds[path] = left - 1
                return False
            del self._holds[path]
        self.holding.set()
        while not self._released.wait(0.05):
            if self._stopping.is_set():
                return True
        return False

    def _expand(self, node: Any, path: list[str]) -> None:
        """Replace the id at `path` (`customer`, `data.latest_invoice`, …) with its object."""
        if isinstance(node, list):
            for element in node:
                self._expand(element, path)
            return
        if not isinstance(node, dict) or not path:
            return
        value = node.get(path[0])
        if isinstance(value, str) and value in self.objects:
            value = node[path[0]] = self._public(self.objects[value])
        self._expand(value, path[1:])

    def _route(self, method: str, path: str) -> tuple[Handler, re.Match[str]] | None:
        for route_method, pattern, target in self._routes:
            match = pattern.match(path)
            if match and route_method == method:
                return target, match
        return None

    # -- helpers --------------------------------------------------------------------------

    def sdk_client(self) -> stripe.StripeClient:
        """The real `stripe` SDK's client, pointed at this fake (no retries: a fault knob's
        error reaches the caller as Stripe's would)."""
        return stripe.StripeClient(
            "sk_test_x", base_addresses={"api": self.base_url}, max_network_retries=0
        )

    def now(self) -> int:
        """The fake's clock (unix seconds): wall time plus `clock_offset`."""
        return int(time.time()) + self.clock_offset

    def new_id(self, prefix: str) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return prefix + "_" + "".join(self._random.choice(alphabet) for _ in range(14))

    def get(self, object_id: str, resource: str | None = None) -> Object:
        """The stored object (live, not a copy); 404 in Stripe's envelope when missing."""
        obj = self.objects.get(object_id)
        if obj is None or (resource is not None and obj["object"] != resource):
            name = resource or "object"
            raise StripeError(
                404, f"No such {name}: '{object_id}'", code="resource_missing", param="id"
            )
        return obj

    def _new(self, resource: str, prefix: str, **fields: Any) -> Object:
        obj = fixture(resource)
        obj.update(id=self.new_id(prefix), created=self.now(), livemode=False)
        if "metadata" in obj:
            obj["metadata"] = {}
        obj.update(fields)
        self.objects[obj["id"]] = obj
        return obj

    @staticmethod
    def _apply_metadata(obj: Object, params: Object) -> None:
        for key, value in (params.get("metadata") or {}).items():
            if value == "":
                obj["metadata"].pop(key, None)
            else:
                obj["metadata"][key] = value

    def _list(
        self, resource: str, params: Object, path: str, keep: Callable[[Object], bool]
    ) -> Object:
        found = [o for o in self.objects.values() if o["object"] == resource and keep(o)]
        found.reverse()  # newest first, as Stripe lists
        limit = _int(params.get("limit", 10), "limit")
        return {
            "object": "list",
            "data": [self._public(obj) for obj in found[:limit]],
            "has_more": len(found) > limit,
            "url": path,
        }

    def _list_of(self, resource: str, *filters: str) -> Handler:
        def handler(
            request: RecordedRequest, params: Object, match: re.Match[str]
        ) -> tuple[int, Object]:
            def keep(obj: Object) -> bool:
                return all(obj.get(name) == params[name] for name in filters if name in params)

            return 200, self._list(resource, params, request.path, keep)

        return handler

    def _retrieve(self, resource: str) -> Handler:
        def handler(
            request: RecordedRequest, params: Object, match: re.Match[str]
        ) -> tuple[int, Object]:
            return 200, self._public(self.get(match["id"], resource))

        return handler

    def _update(self, resource: str) -> Handler:
        def handler(
            request: RecordedRequest, params: Object, match: re.Match[str]
        ) -> tuple[int, Object]:
            obj = self.get(match["id"], resource)
            previous = copy.deepcopy(obj)
            self._apply_metadata(obj, params)
            for name, value in params.items():
                if (
                    name not in ("metadata", "expand")
                    and name in obj
                    and not isinstance(value, dict | list)
                ):
                    obj[name] = _bool(value) if isinstance(obj[name], bool) else value
            changed = {k: previous[k] for k in obj if previous.get(k) != obj[k]}
            self.emit(f"{resource}.updated", obj, previous_attributes=changed)
            return 200, copy.deepcopy(obj)

        return handler

    # -- events and webhooks ----------------------------------------------------------------

    def emit(
        self,
        event_type: str,
        obj: Object,
        *,
        previous_attributes: Object | None = None,
        account: str | None = None,
    ) -> Object:
        """Record an event about `obj` (a snapshot) and queue it for delivery. `account`: the
        connected account it happened on (Stripe sets the event's `account`); such an event
        goes only to Connect endpoints, and the platform's own events only to the others."""
        event = self._new(
            "event",
            "evt",
            type=event_type,
            api_version=self._api_version,
            pending_webhooks=len(self._targets(event_type, account)),
        )
        if account is not None:
            event["account"] = account
        event["data"] = {"object": copy.deepcopy(obj)}
        if previous_attributes:
            event["data"]["previous_attributes"] = copy.deepcopy(previous_attributes)
        event["request"] = {"id": None, "idempotency_key": None}
        with self._state:
            self.events.append(event)
            self._outbox.append(event)
        return event

    def flush_events(self) -> list[Object]:
        """Deliver the queued events (in random order with `shuffle`); returns them."""
        with self._state:
            batch, self._outbox = self._outbox, []
        if self.shuffle:
            self._random.shuffle(batch)
        times = max(self.deliver_times, 2 if self.deliver_twice else 1)
        posts = [
            (event, target)
            for event in batch
            for target in self._targets(event["type"], event.get("account"))
        ]
        if self.shuffle and times > 1:
            posts = [post for post in posts for _ in range(times)]
            self._random.shuffle(posts)
            times = 1
        for event, (url, secret) in posts:
            for _ in range(times):
                self._deliver(event, url, secret)
        return batch

    def _targets(self, event_type: str, account: str | None = None) -> list[tuple[str, str]]:
        """Where an event of `event_type` goes: `webhook_url` (a test's catch-all: every
        event), and every enabled endpoint created through the API that enables it (or `*`),
        each with its secret: a connected account's event (`account` set) only to endpoints
        created with `connect=true`, the platform's only to the others, as Stripe does."""
        targets = [] if self.webhook_url is None else [(self.webhook_url, self.webhook_secret)]
        for obj in list(self.objects.values()):
            if (
                obj["object"] == "webhook_endpoint"
                and obj["status"] == "enabled"
                and obj.get("_connect", False) == (account is not None)
                and ("*" in obj["enabled_events"] or event_type in obj["enabled_events"])
            ):
                targets.append((obj["url"], obj["_secret"]))
        return targets

    def sign(self, payload: str, timestamp: int | None = None, secret: str | None = None) -> str:
        """The `Stripe-Signature` header Stripe sends for `payload` (signed with `secret`,
        by default `webhook_secret`)."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        signature = hmac.new(
            (secret or self.webhook_secret).encode(),
            f"{timestamp}.{payload}".encode(),
            hashlib.sha256,
        ).hexdigest()
        return f"t={timestamp},v1={signature}"

    def _deliver(self, event: Object, url: str, secret: str) -> None:
        payload = json.dumps(event, indent=2)
        for attempt in range(1, self.max_delivery_attempts + 1):
            request = urllib.request.Request(  # noqa: S310 - http(s) checked on creation
                url,
                data=payload.encode(),
                method="POST",
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": self.sign(payload, secret=secret),
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    status = int(response.status)
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = 0
            self.deliveries.append(Delivery(event["id"], event["type"], status, attempt))
            if 200 <= status < 300:
                if self.after_delivery is not None:
                    self.after_delivery()
                return

    # -- customers, products, prices --------------------------------------------------------

    def _customer_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        customer = self._new(
            "customer",
            "cus",
            email=params.get("email"),
            name=params.get("name"),
            description=params.get("description"),
            discount=None,  # the example customer has one; a new customer has none
        )
        self._apply_metadata(customer, params)
        self.emit("customer.created", customer)
        return 200, copy.deepcopy(customer)

    def _product_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        if not params.get("name"):
            raise StripeError(
                400, "Missing required param: name.", code="parameter_missing", param="name"
            )
        product = self._new(
            "product",
            "prod",
            name=params["name"],
            description=params.get("description"),
            active=_bool(params.get("active", "true")),
            default_price=None,
            updated=self.now(),
        )
        self._apply_metadata(product, params)
        self.emit("product.created", product)
        return 200, copy.deepcopy(product)

    def _price_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        for name in ("currency", "product"):
            if not params.get(name):
                raise StripeError(
                    400, f"Missing required param: {name}.", code="parameter_missing", param=name
                )
        self.get(params["product"], "product")
        lookup_key = params.get("lookup_key")
        if lookup_key:
            for other in self.objects.values():
                if other["object"] == "price" and other["lookup_key"] == lookup_key:
                    if not _bool(params.get("transfer_lookup_key")):
                        raise StripeError(
                            400,
                            f"A price (`{other['id']}`) already uses that lookup key.",
                            param="lookup_key",
                        )
                    other["lookup_key"] = None
        recurring_in = params.get("recurring")
        recurring = None
        if recurring_in:
            recurring = {
                "interval": recurring_in.get("interval", "month"),
                "interval_count": _int(
                    recurring_in.get("interval_count", 1), "recurring[interval_count]"
                ),
                "meter": recurring_in.get("meter"),
                "usage_type": recurring_in.get("usage_type", "licensed"),
                "trial_period_days": None,
            }
            if recurring["usage_type"] == "metered" and not recurring["meter"]:
                raise StripeError(
                    400, "Metered prices must be backed by a meter.", param="recurring[meter]"
                )
        unit_amount = params.get("unit_amount")
        scheme = params.get("billing_scheme", "per_unit")
        tiers = self._parse_tiers(params) if scheme == "tiered" else None
        price = self._new(
            "price",
            "price",
            currency=params["currency"].lower(),
            product=params["product"],
            lookup_key=lookup_key,
            nickname=params.get("nickname"),
            active=_bool(params.get("active", "true")),
            recurring=recurring,
            type="recurring" if recurring else "one_time",
            unit_amount=None if unit_amount is None else _int(unit_amount, "unit_amount"),
            unit_amount_decimal=params.get("unit_amount_decimal", unit_amount),
            billing_scheme=scheme,
            tiers_mode=params.get("tiers_mode") if tiers else None,
        )
        if tiers:
            self._tiers[price["id"]] = tiers
        self._apply_metadata(price, params)
        self.emit("price.created", price)
        return 200, copy.deepcopy(price)

    def _price_list(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        lookup_keys = params.get("lookup_keys")

        def keep(price: Object) -> bool:
            if lookup_keys is not None and price["lookup_key"] not in lookup_keys:
                return False
            if "active" in params and price["active"] != _bool(params["active"]):
                return False
            return "product" not in params or price["product"] == params["product"]

        return 200, self._list("price", params, request.path, keep)

    # -- checkout and portal ----------------------------------------------------------------

    def _checkout_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        mode = params.get("mode")
        if mode not in ("payment", "setup", "subscription"):
            raise StripeError(
                400, "Missing required param: mode.", code="parameter_missing", param="mode"
            )
        if not params.get("success_url") and params.get("ui_mode", "hosted") == "hosted":
            raise StripeError(
                400,
                "Missing required param: success_url.",
                code="parameter_missing",
                param="success_url",
            )
        if params.get("customer"):
            self.get(params["customer"], "customer")
        line_items = self._line_items_priced(params.get("line_items") or [])
        if mode == "payment":  # a destination charge's terms, refused now as Stripe does
            self._destination_params(
                params.get("payment_intent_data") or {}, "payment_intent_data", None
            )
        session = self._new(
            "checkout.session",
            "cs_test",
            mode=mode,
            customer=params.get("customer"),
            customer_email=params.get("customer_email"),
            success_url=params.get("success_url"),
            cancel_url=params.get("cancel_url"),
            client_reference_id=params.get("client_reference_id"),
            status="open",
            payment_status="unpaid",
            subscription=None,
            invoice=None,
            payment_intent=None,  # the example's; a subscription-mode session has none
            expires_at=self.now() + 24 * 3600,
        )
        session["url"] = f"{self.url}/test/checkout/{session['id']}"
        self._apply_metadata(session, params)
        # kept for complete_checkout; Stripe does not return line items on the session
        session["_line_items"] = line_items
        session["_subscription_data"] = params.get("subscription_data") or {}
        session["_params"] = params
        return 200, self._public(session)

    def _checkout_expire(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        session = self.get(match["id"], "checkout.session")
        if session["status"] != "open":
            raise StripeError(
                400, 'Only Checkout Sessions with a status in ["open"] can be expired.'
            )
        session["status"] = "expired"
        self.emit("checkout.session.expired", session)
        return 200, self._public(session)

    @staticmethod
    def _public(obj: Object) -> Object:
        return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}

    def _portal_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        if not params.get("customer"):
            raise StripeError(
                400, "Missing required param: customer.", code="parameter_missing", param="customer"
            )
        self.get(params["customer"], "customer")
        session = self._new(
            "billing_portal.session",
            "bps",
            customer=params["customer"],
            return_url=params.get("return_url"),
            flow=None,
        )
        session["url"] = f"{self.url}/test/portal/{session['id']}"
        return 200, copy.deepcopy(session)

    def _test_request(self, method: str, path: str, params: Object, out: Exchange) -> None:
        """The pages behind the `url`s the fake hands out, and test-only actions over HTTP
        (for browser tests): GET `/test/checkout/{id}` (a Pay button), POST
        `/test/checkout/{id}/complete` (`complete_checkout`, then a 303 to `success_url`),
        GET `/test/portal/{id}`, POST `/test/subscriptions/{id}/close_period` (`fail=true`
        for a failed payment; answers the invoice, or the subscription when it ended).
        The pages a person clicks through are `_hosted_page`'s."""
        if self._hosted_page(method, path, out) or self._connect_page(method, path, out):
            return
        action = re.fullmatch(
            r"/test/(checkout|subscriptions)/([^/]+)/(complete|close_period)", path
        )
        try:
            if method == "POST" and action and action[1] == "checkout" and action[3] == "complete":
                self._complete_checkout(action[2])
                if not self.hold_events:
                    self.flush_events()
                session = self.get(action[2])
                location = (session["success_url"] or "").replace(
                    "{CHECKOUT_SESSION_ID}", session["id"]
                )
                out.send_bytes(303, b"", headers={"Location": location})
            elif (
                method == "POST"
                and action
                and action[1] == "subscriptions"
                and action[3] == "close_period"
            ):
                invoice = self._close_period(action[2], fail=_bool(params.get("fail")))
                if not self.hold_events:
                    self.flush_events()
                out.send_json(200, invoice or self._public(self.get(action[2])))
            else:
                raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")
        except StripeError as exc:
            out.send_json(exc.status, exc.envelope())

    # -- hosted pages: the stand-in a person clicks through (scripts/dev's test mode) ------------

    def _hosted_page(self, method: str, path: str, out: Exchange) -> bool:
        """Serve the pages behind the checkout, portal and invoice `url`s, and the portal's
        buttons; False for any other test path. Every page says it is a test: no card is
        asked for and no money moves.

        GET  /test/checkout/{id}                                  Pay (→ .../complete) or Cancel
        GET  /test/portal/{id}                                    subscriptions and invoices
        POST /test/portal/{id}/subscriptions/{sub}/cancel         cancel at the period's end
        POST /test/portal/{id}/subscriptions/{sub}/close_period   end the period now (invoice)
        GET  /test/invoice/{id}                                   the invoice's lines
        """
        page = re.fullmatch(r"/test/(checkout|portal|invoice)/([^/]+)", path)
        portal_action = re.fullmatch(
            r"/test/portal/([^/]+)/subscriptions/([^/]+)/(cancel|close_period)", path
        )
        try:
            if method == "GET" and page:
                body = {
                    "checkout": self._checkout_page,
                    "portal": self._portal_page,
                    "invoice": self._invoice_page,
                }[page[1]](page[2])
                out.send_bytes(200, body.encode(), content_type="text/html; charset=utf-8")
                return True
            if method == "POST" and portal_action:
                self._portal_act(portal_action[1], portal_action[2], portal_action[3])
                if not self.hold_events:
                    self.flush_events()
                out.send_bytes(303, b"", headers={"Location": f"/test/portal/{portal_action[1]}"})
                return True
        except StripeError as exc:
            out.send_bytes(
                exc.status,
                _hosted_html("Not found", f"<p>{html.escape(exc.message)}</p>").encode(),
                content_type="text/html; charset=utf-8",
            )
            return True
        return False

    def _checkout_page(self, session_id: str) -> str:
        session = self.get(session_id, "checkout.session")
        sid = html.escape(session["id"])
        cancel = html.escape(session.get("cancel_url") or "")
        if session["status"] != "open":
            done = html.escape(
                (session.get("success_url") or "").replace("{CHECKOUT_SESSION_ID}", session["id"])
            )
            return _hosted_html(
                "Checkout", f'<p>This checkout is {session["status"]}.</p><a href="{done}">Back</a>'
            )
        rows, total = [], 0
        for item in session["_line_items"]:
            price = self.get(item.get("price", ""), "price")
            product = self.objects.get(price["product"], {})
            name = html.escape(product.get("name") or price["id"])
            recurring = price["recurring"] or {}
            unit = _money(price["unit_amount"] or 0, price["currency"])
            if recurring.get("usage_type") == "metered":  # billed at the period's end
                rows.append(f"<tr><td>{name}</td><td>by use</td><td>{unit} each</td></tr>")
                continue
            quantity = int(item.get("quantity") or 1)
            amount = (price["unit_amount"] or 0) * quantity
            total += amount
            interval = recurring.get("interval")
            rows.append(
                f"<tr><td>{name}</td><td>{quantity}</td><td>{_money(amount, price['currency'])}"
                f"{' / ' + html.escape(interval) if interval else ''}</td></tr>"
            )
        email = html.escape(session.get("customer_email") or session.get("customer") or "")
        if session["mode"] == "setup":  # nothing to pay: a card is saved for later charges
            rows.append("<tr><td>Save a card for later charges</td><td></td><td></td></tr>")
        body = (
            f"<p>Paying as <strong>{email}</strong>. No card is needed: Pay completes the "
            "checkout as if the payment succeeded.</p>"
            "<table><tr><th>Item</th><th>Quantity</th><th>Price</th></tr>"
            f"{''.join(rows)}<tr><th>Due today</th><td></td><th>{_money(total, 'usd')}</th></tr>"
            "</table>"
            f'<form method="post" action="/test/checkout/{sid}/complete">'
            '<button type="submit">Pay</button></form>'
            f'<p><a href="{cancel}">Cancel and go back</a></p>'
        )
        return _hosted_html("Checkout", body)

    def _portal_page(self, portal_id: str) -> str:
        portal = self.get(portal_id, "billing_portal.session")
        customer = self.get(portal["customer"], "customer")
        pid = html.escape(portal["id"])
        subscriptions = [
            o
            for o in self.objects.values()
            if o["object"] == "subscription" and o["customer"] == customer["id"]
        ]
        parts = [f"<p>Customer <strong>{html.escape(customer.get('email') or customer['id'])}"]
        parts.append("</strong>.</p><h2>Subscriptions</h2>")
        for sub in reversed(subscriptions):
            items = sub["items"]["data"]
            names = ", ".join(
                html.escape(self.objects.get(i["price"]["product"], {}).get("name") or "?")
                for i in items
            )
            end = max((i["current_period_end"] for i in items), default=self.now())
            state = sub["status"]
            if sub["cancel_at_period_end"] and state != "canceled":
                state += f", cancels when this period ends ({_day(end)})"
            parts.append(f"<div class='sub'><p><strong>{names}</strong>: {html.escape(state)}")
            if sub["status"] != "canceled":
                parts.append(f"; this period ends {_day(end)}.</p>")
                base = f"/test/portal/{pid}/subscriptions/{html.escape(sub['id'])}"
                if not sub["cancel_at_period_end"]:
                    parts.append(
                        f'<form method="post" action="{base}/cancel">'
                        '<button type="submit">Cancel subscription</button></form>'
                    )
                parts.append(
                    f'<form method="post" action="{base}/close_period">'
                    '<button type="submit">End this period now (test mode)</button> '
                    "<small>Bills the period, metered usage included, as Stripe would at its "
                    "end.</small></form>"
                )
            else:
                parts.append(".</p>")
            parts.append("</div>")
        invoices = [
            o
            for o in self.objects.values()
            if o["object"] == "invoice" and o["customer"] == customer["id"]
        ]
        parts.append("<h2>Invoices</h2><ul>")
        for invoice in reversed(invoices):
            parts.append(
                f'<li><a href="/test/invoice/{html.escape(invoice["id"])}">'
                f"{html.escape(invoice.get('number') or invoice['id'])}</a>: "
                f"{_money(invoice['total'], invoice['currency'])}, "
                f"{html.escape(invoice['status'])}</li>"
            )
        parts.append("</ul>")
        parts.append(f'<p><a href="{html.escape(portal.get("return_url") or "")}">Return</a></p>')
        return _hosted_html("Billing portal", "".join(parts))

    def _portal_act(self, portal_id: str, subscription_id: str, verb: str) -> None:
        portal = self.get(portal_id, "billing_portal.session")
        subscription = self.get(subscription_id, "subscription")
        if subscription["customer"] != portal["customer"]:
            raise StripeError(404, f"No such subscription: '{subscription_id}'")
        if verb == "close_period":
            self._close_period(subscription_id, fail=False)
            return
        with self._state:
            match = re.fullmatch(r"(?P<id>.+)", subscription_id)
            assert match is not None
            self._subscription_update(
                RecordedRequest(
                    method="POST",
                    path=f"/v1/subscriptions/{subscription_id}",
                    query={},
                    headers={},
                    body=None,
                    raw=b"",
                    endpoint=None,
                    api_key=None,
                ),
                {"cancel_at_period_end": "true"},
                match,
            )

    def _invoice_page(self, invoice_id: str) -> str:
        invoice = self.get(invoice_id, "invoice")
        lines = "".join(
            f"<tr><td>{html.escape(self._line_name(line))}</td>"
            f"<td>{_day(line['period']['start'])} – {_day(line['period']['end'])}</td>"
            f"<td>{_money(line['amount'], invoice['currency'])}</td></tr>"
            for line in invoice["lines"]["data"]
        )
        body = (
            f"<p>Invoice <strong>{html.escape(invoice.get('number') or invoice['id'])}</strong>, "
            f"{html.escape(invoice['status'])}, for {_day(invoice['period_start'])} – "
            f"{_day(invoice['period_end'])}.</p>"
            f"<table><tr><th>Line</th><th>Period</th><th>Amount</th></tr>{lines}"
            f"<tr><th>Total</th><td></td><th>{_money(invoice['total'], invoice['currency'])}"
            "</th></tr></table>"
        )
        return _hosted_html("Invoice", body)

    def _line_name(self, line: Object) -> str:
        price_id = ((line.get("pricing") or {}).get("price_details") or {}).get("price", "")
        price = self.objects.get(price_id)
        if price is None:
            return str(line.get("description") or "")
        name = str(self.objects.get(price["product"], {}).get("name") or price["id"])
        if (price["recurring"] or {}).get("usage_type") == "metered":
            return f"{name} (metered usage)"
        return f"{name} × {line.get('quantity') or 1}"

    # -- subscriptions and invoices -----------------------------------------------------------

    def complete_checkout(self, session_id: str) -> Object:
        """Pay a subscription-mode checkout session as a customer would: create the customer
        (when the session had none), the active subscription and its first paid invoice, and
        emit `customer.subscription.created`, `invoice.paid`, `checkout.session.completed`.
        Returns the subscription (payment and setup sessions: the intent, see stripe_payments)."""
        subscription = self._public(self._complete_checkout(session_id))
        if not self.hold_events:
            self.flush_events()
        return subscription

    def _complete_checkout(self, session_id: str) -> Object:
        with self._state:
            session = self.get(session_id, "checkout.session")
            if session["status"] != "open":
                raise StripeError(400, f"Checkout session {session_id} is not open.")
            if session["mode"] != "subscription":
                return self._complete_payment_or_setup(session)
            if not session["customer"]:
                customer = self._new(
                    "customer", "cus", email=session["customer_email"], name=None, discount=None
                )
                self.emit("customer.created", customer)
                session["customer"] = customer["id"]
            now = self.now()
            subscription = self._new(
                "subscription",
                "sub",
                customer=session["customer"],
                status="active",
                cancel_at=None,
                canceled_at=None,
                ended_at=None,
                cancel_at_period_end=False,
                start_date=now,
                billing_cycle_anchor=now,
                trial_start=None,
                trial_end=None,
                schedule=None,
                test_clock=None,
                discounts=[],
            )
            self._apply_metadata(subscription, session["_subscription_data"])
            subscription["items"] = {
                "object": "list",
                "data": [],
                "has_more": False,
                "total_count": 0,
                "url": f"/v1/subscription_items?subscription={subscription['id']}",
            }
            for item in session["_line_items"]:
                self._add_item(subscription, item["price"], item.get("quantity"), now)
            invoice = self._invoice(subscription, now, now, "subscription_create")
            self._settle(invoice, paid=True)
            subscription["latest_invoice"] = invoice["id"]
            session.update(
                url=None,
                status="complete",
                payment_status="paid",
                subscription=subscription["id"],
                invoice=invoice["id"],
            )
            session["amount_total"] = session["amount_subtotal"] = invoice["total"]
            self.emit("customer.subscription.created", subscription)
            self.emit("invoice.paid", invoice)
            self.emit("checkout.session.completed", self._public(session))
        return subscription

    def _add_item(self, subscription: Object, price_id: str, quantity: Any, start: int) -> None:
        price = self.get(price_id, "price")
        recurring = price["recurring"] or {
            "interval": "month",
            "interval_count": 1,
            "usage_type": "licensed",
        }
        metered = recurring["usage_type"] == "metered"
        item = fixture("subscription")["items"]["data"][0]
        item.update(
            id=self.new_id("si"),
            created=start,
            metadata={},
            subscription=subscription["id"],
            price=copy.deepcopy(price),
            plan=None,
            quantity=None if metered else int(quantity or 1),
            current_period_start=start,
            current_period_end=_add_interval(
                start, recurring["interval"], recurring["interval_count"]
            ),
        )
        items = subscription["items"]
        items["data"].append(item)
        items["total_count"] = len(items["data"])

    def _item_amount(self, subscription: Object, item: Object, start: int, end: int) -> int:
        price = item["price"]
        unit = price["unit_amount"] or 0
        recurring = price["recurring"] or {}
        if recurring.get("usage_type") != "metered":
            units = int(item["quantity"] or 1)
        else:
            meter = self.objects.get(recurring.get("meter") or "")
            if meter is None:
                return 0
            units = self._usage(meter, subscription["customer"], start, end)
        tiers = self._tiers.get(price["id"])
        if tiers is None:
            return unit * units
        return _tiered_amount(tiers, price["tiers_mode"], units)

    @staticmethod
    def _parse_tiers(params: Object) -> list[tuple[int | None, Decimal, int]]:
        """`tiers[i][up_to|unit_amount|unit_amount_decimal|flat_amount]` → (up_to or None for
        "inf", cents per unit, flat cents), validated as Stripe does."""
        if params.get("tiers_mode") not in ("graduated", "volume"):
            raise StripeError(
                400,
                "Missing required param: tiers_mode.",
                code="parameter_missing",
                param="tiers_mode",
            )
        raw = params.get("tiers") or []
        if not raw or raw[-1].get("up_to") != "inf":
            raise StripeError(400, "The last tier must have `up_to` set to `inf`.", param="tiers")
        tiers = []
        for index, tier in enumerate(raw):
            up_to = (
                None if tier["up_to"] == "inf" else _int(tier["up_to"], f"tiers[{index}][up_to]")
            )
            unit = Decimal(str(tier.get("unit_amount_decimal") or tier.get("unit_amount") or 0))
            tiers.append((up_to, unit, int(tier.get("flat_amount") or 0)))
        return tiers

    def _invoice(self, subscription: Object, start: int, end: int, reason: str) -> Object:
        invoice = self._new(
            "invoice",
            "in",
            customer=subscription["customer"],
            subscription=subscription["id"],
            billing_reason=reason,
            currency=subscription["items"]["data"][0]["price"]["currency"]
            if subscription["items"]["data"]
            else "usd",
            period_start=start,
            period_end=end,
            status="draft",
            test_clock=None,
            discounts=[],
            hosted_invoice_url=None,
            invoice_pdf=None,
            number=None,
            attempted=False,
            attempt_count=0,
        )
        invoice["parent"] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription["metadata"]),
                "subscription": subscription["id"],
            },
        }
        template = invoice["lines"]["data"][0]
        lines = []
        for item in subscription["items"]["data"]:
            line = copy.deepcopy(template)
            amount = (
                self._item_amount(
                    subscription, item, item["current_period_start"], item["current_period_end"]
                )
                if reason == "subscription_cycle"
                or (item["price"]["recurring"] or {}).get("usage_type") != "metered"
                else 0
            )
            line.update(
                id=self.new_id("il"),
                invoice=invoice["id"],
                amount=amount,
                currency=invoice["currency"],
                quantity=item["quantity"],
                subscription=subscription["id"],
                # Stripe: "for line items with type=subscription, metadata reflects the current
                # metadata from the subscription associated with the line item"
                metadata=dict(subscription["metadata"]),
                period={"start": item["current_period_start"], "end": item["current_period_end"]},
                description=f"{item['quantity'] or ''} × {item['price']['id']}".strip(),
            )
            line["parent"] = {
                "type": "subscription_item_details",
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": subscription["id"],
                    "subscription_item": item["id"],
                },
            }
            line["pricing"] = {
                "type": "price_details",
                "price_details": {
                    "price": item["price"]["id"],
                    "product": item["price"]["product"],
                },
                # a tiered price has no unit amount (Stripe sends null, never "None")
                "unit_amount_decimal": item["price"]["unit_amount_decimal"],
            }
            lines.append(line)
        lines += self._pending_item_lines(invoice, template)
        self._set_lines(invoice, lines)
        return invoice

    @staticmethod
    def _set_lines(invoice: Object, lines: list[Object]) -> None:
        """Put `lines` on a draft invoice, with the totals Stripe derives from them (no tax,
        discount or credit; nothing paid yet)."""
        total = sum(line["amount"] for line in lines)
        invoice["lines"] = {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice['id']}/lines",
        }
        invoice.update(
            subtotal=total,
            subtotal_excluding_tax=total,
            total=total,
            total_excluding_tax=total,
            amount_due=total,
            amount_paid=0,
            amount_remaining=total,
            total_taxes=[],
            total_discount_amounts=[],
            total_pretax_credit_amounts=[],
        )

    def _settle(self, invoice: Object, *, paid: bool, out_of_band: bool = False) -> None:
        now = self.now()
        invoice.update(
            attempted=True, attempt_count=1, number=f"FAKE-{self.next_id():04d}", effective_at=now
        )
        invoice["hosted_invoice_url"] = f"{self.url}/test/invoice/{invoice['id']}"
        if paid:
            if not out_of_band:
                self._invoice_payment_record(invoice)
            invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0)
            invoice["status_transitions"] = {
                "finalized_at": now,
                "marked_uncollectible_at": None,
                "paid_at": now,
                "voided_at": None,
            }
        else:
            invoice.update(status="open", next_payment_attempt=now + 3 * 86400)
            invoice["status_transitions"] = {
                "finalized_at": now,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            }

    def close_period(self, subscription_id: str, *, fail: bool = False) -> Object | None:
        """End the subscription's current period. With `cancel_at_period_end`, the
        subscription ends (`customer.subscription.deleted`) and None is returned. Otherwise
        an invoice for the period is created (`invoice.created`, metered usage summed from
        the meter events) and paid (`invoice.paid`) or, with `fail`, left open
        (`invoice.payment_failed`, subscription `past_due`, `customer.subscription.updated`);
        the items move to the next period. Returns the invoice."""
        invoice = self._close_period(subscription_id, fail=fail)
        if not self.hold_events:
            self.flush_events()
        return None if invoice is None else self._public(invoice)

    def _close_period(self, subscription_id: str, *, fail: bool) -> Object | None:
        with self._state:
            subscription = self.get(subscription_id, "subscription")
            if subscription["status"] == "canceled":
                raise StripeError(400, f"Subscription {subscription_id} is canceled.")
            items = subscription["items"]["data"]
            period_end = max((item["current_period_end"] for item in items), default=self.now())
            invoice: Object | None = None
            if subscription["cancel_at_period_end"]:
                subscription.update(status="canceled", canceled_at=self.now(), ended_at=period_end)
                self.emit("customer.subscription.deleted", subscription)
            else:
                invoice = self._invoice(
                    subscription, items[0]["current_period_start"], period_end, "subscription_cycle"
                )
                self.emit("invoice.created", invoice)
                self._settle(invoice, paid=not fail)
                for item in items:
                    recurring = item["price"]["recurring"] or {
                        "interval": "month",
                        "interval_count": 1,
                    }
                    item["current_period_start"] = item["current_period_end"]
                    item["current_period_end"] = _add_interval(
                        item["current_period_end"],
                        recurring["interval"],
                        recurring["interval_count"],
                    )
                subscription["latest_invoice"] = invoice["id"]
                if fail:
                    previous = {"status": subscription["status"]}
                    subscription["status"] = "past_due"
                    self.emit("invoice.payment_failed", invoice)
                    self.emit(
                        "customer.subscription.updated", subscription, previous_attributes=previous
                    )
                else:
                    self.emit("invoice.paid", invoice)
        return invoice

    def _subscription_list(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        """Without `status`, canceled subscriptions are left out (`status=all` keeps them)."""
        status = params.get("status")

        def keep(subscription: Object) -> bool:
            if params.get("customer") not in (None, subscription["customer"]):
                return False
            if params.get("price") is not None and all(
                item["price"]["id"] != params["price"] for item in subscription["items"]["data"]
            ):
                return False
            if status is None:
                return bool(subscription["status"] != "canceled")
            return status in ("all", subscription["status"])

        return 200, self._list("subscription", params, request.path, keep)

    def pause(self, subscription_id: str) -> Object:
        """The trial ends without a payment method under `end_behavior.missing_payment_method
        = pause`: the subscription is `paused` (no invoices) until resumed
        (`customer.subscription.paused`, then `.updated`, as Stripe sends them)."""
        with self._state:
            subscription = self.get(subscription_id, "subscription")
            previous = subscription["status"]
            subscription.update(status="paused", trial_end=self.now())
            self.emit("customer.subscription.paused", subscription)
            self.emit(
                "customer.subscription.updated",
                subscription,
                previous_attributes={"status": previous},
            )
        if not self.hold_events:
            self.flush_events()
        return self._public(subscription)

    def _subscription_resume(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        """`POST /v1/subscriptions/{id}/resume`: a paused subscription is `active` again
        (`customer.subscription.resumed`, then `.updated`)."""
        subscription = self.get(match["id"], "subscription")
        if subscription["status"] != "paused":
            raise StripeError(
                400, f"Subscription {subscription['id']} is {subscription['status']}, not paused."
            )
        subscription["status"] = "active"
        self.emit("customer.subscription.resumed", subscription)
        self.emit(
            "customer.subscription.updated", subscription, previous_attributes={"status": "paused"}
        )
        return 200, self._public(subscription)

    def _subscription_update(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        subscription = self.get(match["id"], "subscription")
        if subscription["status"] == "canceled":
            raise StripeError(
                400,
                "A canceled subscription can only update its cancellation_details and metadata.",
            )
        previous = copy.deepcopy(subscription)
        self._apply_metadata(subscription, params)
        if "cancel_at_period_end" in params:
            at_end = _bool(params["cancel_at_period_end"])
            subscription["cancel_at_period_end"] = at_end
            subscription["cancel_at"] = (
                subscription["items"]["data"][0]["current_period_end"] if at_end else None
            )
            subscription["canceled_at"] = self.now() if at_end else None
        items = subscription["items"]
        for index, change in enumerate(params.get("items") or []):
            if change.get("id"):
                existing = next((i for i in items["data"] if i["id"] == change["id"]), None)
                if existing is None:
                    raise StripeError(
                        404,
                        f"No such subscription item: '{change['id']}'",
                        code="resource_missing",
                        param=f"items[{index}][id]",
                    )
                if _bool(change.get("deleted")):
                    items["data"].remove(existing)
                    continue
                if change.get("price"):
                    existing["price"] = copy.deepcopy(self.get(change["price"], "price"))
                if "quantity" in change:
                    existing["quantity"] = _int(change["quantity"], f"items[{index}][quantity]")
            else:
                start = items["data"][0]["current_period_start"] if items["data"] else self.now()
                self._add_item(subscription, change.get("price", ""), change.get("quantity"), start)
        items["total_count"] = len(items["data"])
        changed = {k: previous[k] for k in subscription if previous.get(k) != subscription[k]}
        self.emit("customer.subscription.updated", subscription, previous_attributes=changed)
        return 200, copy.deepcopy(subscription)

    def _subscription_cancel(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        subscription = self.get(match["id"], "subscription")
        if subscription["status"] == "canceled":
            raise StripeError(
                400,
                f"No such subscription: '{match['id']}' is already canceled.",
                code="resource_missing",
                param="id",
            )
        now = self.now()
        subscription.update(status="canceled", canceled_at=now, ended_at=now)
        self.emit("customer.subscription.deleted", subscription)
        return 200, copy.deepcopy(subscription)

    # -- billing meters -----------------------------------------------------------------------

    def _meter_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        for name in ("display_name", "event_name", "default_aggregation"):
            if not params.get(name):
                raise StripeError(
                    400, f"Missing required param: {name}.", code="parameter_missing", param=name
                )
        if any(
            o["object"] == "billing.meter"
            and o["event_name"] == params["event_name"]
            and o["status"] == "active"
            for o in self.objects.values()
        ):
            raise StripeError(
                400,
                f"An active meter with event_name `{params['event_name']}` already exists.",
                param="event_name",
            )
        mapping = params.get("customer_mapping") or {}
        meter = self._new(
            "billing.meter",
            "mtr",
            display_name=params["display_name"],
            event_name=params["event_name"],
            status="active",
            default_aggregation={"formula": params["default_aggregation"].get("formula", "sum")},
            customer_mapping={
                "event_payload_key": mapping.get("event_payload_key", "stripe_customer_id"),
                "type": "by_id",
            },
            value_settings={
                "event_payload_key": (params.get("value_settings") or {}).get(
                    "event_payload_key", "value"
                )
            },
            updated=self.now(),
        )
        return 200, copy.deepcopy(meter)

    def _meter_event_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        for name in ("event_name", "payload"):
            if not params.get(name):
                raise StripeError(
                    400, f"Missing required param: {name}.", code="parameter_missing", param=name
                )
        now = self.now()
        timestamp = _int(params.get("timestamp", now), "timestamp")
        if timestamp < now - METER_EVENT_MAX_AGE:
            raise StripeError(
                400,
                "Timestamp must be within the past 35 calendar days.",
                code="timestamp_too_far_in_past",
                param="timestamp",
            )
        if timestamp > now + METER_EVENT_MAX_FUTURE:
            raise StripeError(
                400,
                "Timestamp must not be more than 5 minutes in the future.",
                code="timestamp_in_future",
                param="timestamp",
            )
        value = params["payload"].get("value") if isinstance(params["payload"], dict) else None
        if value is not None and not re.fullmatch(r"-?\d+", value):
            raise StripeError(
                400, "The meter event value must be a whole number.", param="payload[value]"
            )
        identifier = params.get("identifier") or self.new_id("mev")
        for other in self.meter_events:
            if (
                other["identifier"] == identifier
                and other["created"] > now - METER_EVENT_DEDUP_WINDOW
            ):
                raise StripeError(
                    400,
                    f"An event already exists with identifier {identifier}.",
                    code="resource_already_exists",
                    param="identifier",
                )
        event = fixture("billing.meter_event")
        event.update(
            created=now,
            event_name=params["event_name"],
            identifier=identifier,
            livemode=False,
            payload=dict(params["payload"]),
            timestamp=timestamp,
        )
        self.meter_events.append(event)
        return 200, copy.deepcopy(event)

    def _usage(self, meter: Object, customer: str, start: int, end: int) -> int:
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        return sum(
            int(event["payload"].get(value_key, 0))
            for event in self.meter_events
            if event["event_name"] == meter["event_name"]
            and event["payload"].get(customer_key) == customer
            and start <= event["timestamp"] < end
        )

    def _summaries(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        meter = self.get(match["id"], "billing.meter")
        for name in ("customer", "start_time", "end_time"):
            if not params.get(name):
                raise StripeError(
                    400, f"Missing required param: {name}.", code="parameter_missing", param=name
                )
        start, end = _int(params["start_time"], "start_time"), _int(params["end_time"], "end_time")
        summary = fixture("billing.meter_event_summary")
        summary.update(
            id=self.new_id("mtrusg"),
            meter=meter["id"],
            start_time=start,
            end_time=end,
            livemode=False,
            aggregated_value=self._usage(meter, params["customer"], start, end),
        )
        return 200, {"object": "list", "data": [summary], "has_more": False, "url": request.path}

    # -- webhook endpoints, the account --------------------------------------------------------

    def _webhook_endpoint_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        for name in ("url", "enabled_events"):
            if not params.get(name):
                raise StripeError(
                    400, f"Missing required param: {name}.", code="parameter_missing", param=name
                )
        if not str(params["url"]).startswith(("http://", "https://")):
            raise StripeError(400, "Invalid URL: must be an http(s) URL.", param="url")
        secret = "whsec_" + secrets.token_hex(16)
        endpoint = self._new(
            "webhook_endpoint",
            "we",
            url=params["url"],
            enabled_events=list(params["enabled_events"]),
            api_version=params.get("api_version"),
            description=params.get("description"),
            status="enabled",
            _secret=secret,
            _connect=params.get("connect") in (True, "true"),  # write-only at Stripe too
        )
        self._apply_metadata(endpoint, params)
        # Stripe shows the secret once, in the answer to the create.
        return 200, {**self._public(endpoint), "secret": secret}

    def _webhook_endpoint_update(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        """Stripe's update: `enabled_events` replaces the list (never empty); url, description
        and `disabled` change in place; the secret, API version and `connect` cannot."""
        endpoint = self.get(match["id"], "webhook_endpoint")
        if "enabled_events" in params:
            if not params["enabled_events"]:
                raise StripeError(400, "Invalid array", param="enabled_events")
            endpoint["enabled_events"] = list(params["enabled_events"])
        for name in ("url", "description"):
            if name in params:
                endpoint[name] = params[name]
        if "disabled" in params:
            endpoint["status"] = "disabled" if _bool(params["disabled"]) else "enabled"
        self._apply_metadata(endpoint, params)
        return 200, self._public(endpoint)

    def _webhook_endpoint_delete(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        endpoint = self.get(match["id"], "webhook_endpoint")
        del self.objects[endpoint["id"]]
        return 200, {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}

    def _account(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        """The platform's own account (dj-stripe reads it to own the objects it syncs)."""
        with self._state:
            account = next((o for o in self.objects.values() if o["object"] == "account"), None)
            if account is None:
                account = self._new("account", "acct", type="standard", email=None)
        return 200, self._public(account)

    def _invoice_pay(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        """Pay an open invoice (the customer fixed the card; `paid_out_of_band=true`: paid
        outside Stripe, no payment): `invoice.paid`, and a `past_due` subscription whose latest
        invoice it is becomes `active` again (`customer.subscription.updated`)."""
        invoice = self.get(match["id"], "invoice")
        if invoice["status"] != "open":
            raise StripeError(400, f"Invoice {invoice['id']} is {invoice['status']}, not open.")
        attempts, number = invoice["attempt_count"], invoice["number"]
        self._settle(invoice, paid=True, out_of_band=_bool(params.get("paid_out_of_band")))
        invoice.update(attempt_count=attempts + 1, number=number)
        invoice["next_payment_attempt"] = None
        self.emit("invoice.paid", invoice)
        subscription = self.objects.get(invoice.get("subscription") or "")
        if (
            subscription is not None
            and subscription["status"] == "past_due"
            and subscription["latest_invoice"] == invoice["id"]
        ):
            subscription["status"] = "active"
            self.emit(
                "customer.subscription.updated",
                subscription,
                previous_attributes={"status": "past_due"},
            )
        return 200, self._public(invoice)

    def _product_features(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        """No entitlement features (dj-stripe lists them when it syncs a product)."""
        self.get(match["id"], "product")
        return 200, {"object": "list", "data": [], "has_more": False, "url": request.path}


TEST_MODE_BANNER = "Billing test mode — no real money"


def _hosted_html(title: str, body: str) -> str:
    """A hosted page of the fake: the test-mode banner on top, then `body` (already escaped)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} · {TEST_MODE_BANNER}</title>"
        "<style>body{font:16px system-ui,sans-serif;max-width:42rem;margin:0 auto;padding:1rem}"
        ".banner{background:#fde68a;border:2px solid #b45309;padding:.6rem 1rem;"
        "font-weight:700;border-radius:.4rem}table{border-collapse:collapse;margin:1rem 0}"
        "td,th{border-bottom:1px solid #ddd;padding:.3rem .8rem;text-align:left}"
        "button{font-size:1rem;padding:.5rem 1.2rem}.sub{margin:1rem 0}</style></head><body>"
        f'<p class="banner" role="status">{TEST_MODE_BANNER}: this page stands in for '
        "Stripe. Nothing is charged.</p>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _money(cents: int, currency: str) -> str:
    symbol = "$" if currency.lower() == "usd" else currency.upper() + " "
    return f"{symbol}{cents / 100:,.2f}"


def _day(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
