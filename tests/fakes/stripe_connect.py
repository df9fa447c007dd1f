"""Stripe Connect for `FakeStripe`: connected (Express) accounts, account links to a hosted
onboarding page, login links, and `account.updated` when an account changes.

    account = client.v1.accounts.create(params={"type": "express", "country": "US"})
    link = client.v1.account_links.create(params={"account": account.id, ...})
    # a person opens link.url (the fake's /test/connect/onboarding/<id> page) and submits it,
    # or a test calls:
    fake.complete_onboarding(account.id)  # details submitted, requested capabilities active
    fake.connected_account("acct_creator")  # a test's account, already onboarded

A new account needs what Stripe's example account needs (`requirements.currently_due`), with
charges and payouts disabled until onboarding completes. Capabilities are Stripe's: only those
requested at creation (`capabilities[<name>][requested]=true`) exist, "inactive" until onboarding
activates them; `charges_enabled` needs `card_payments` active, so an account that only
receives transfers never has charges enabled. `tos_acceptance[service_agreement]` is "full"
(the default) or "recipient"; a recipient account cannot request `card_payments`, and an account
in another country than the platform's (US) must be a recipient one (Stripe's cross-border
payouts). A transfer goes only to a connected account whose `transfers` capability is active
(`transfer_destination_error`). Links are single use and expire after five minutes, as Stripe's
do: opening a used or expired one redirects to its `refresh_url`. Connected accounts are kept
apart from the platform's own (`GET /v1/account`).
"""

from __future__ import annotations

import copy
import html
import re
from typing import Any

# `import … as` reads the partly initialised module: stripe_api imports this mixin at its top.
import tests.fakes.stripe_api as api
from tests.fakes.server import Exchange, RecordedRequest

LINK_LIFETIME = 300
ACCOUNT_TYPES = ("express", "standard", "custom")
SERVICE_AGREEMENTS = ("full", "recipient")
PLATFORM_COUNTRY = "US"  # the fake platform's own account (Stripe's example account)

Object = dict[str, Any]


def _hosted_html(title: str, body: str) -> str:
    """A page like the fake's other hosted pages (same test-mode banner)."""
    return api._hosted_html(title, body)  # noqa: SLF001 - one banner for all the fake's pages


class StripeConnectMixin:
    """The Connect endpoints and test pages of `FakeStripe` (mixed into it)."""

    def _connect_routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", r"/v1/accounts", self._connect_account_create),
            ("GET", r"/v1/accounts", self._connect_account_list),
            ("GET", r"/v1/accounts/(?P<id>acct_[^/]+)", self._connect_account_retrieve),
            ("POST", r"/v1/accounts/(?P<id>acct_[^/]+)", self._connect_account_update),
            ("POST", r"/v1/accounts/(?P<id>acct_[^/]+)/login_links", self._connect_login_link),
            ("POST", r"/v1/account_links", self._connect_link_create),
        ]

    # -- API ----------------------------------------------------------------------------------

    def _connected(self: Any, account_id: str) -> Object:
        account = self.get(account_id, "account")
        if not account.get("_connected"):
            raise api.StripeError(
                404, f"No such account: '{account_id}'", code="resource_missing", param="account"
            )
        return account

    def _connect_account_create(
        self: Any, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        kind = params.get("type") or "express"
        if kind not in ACCOUNT_TYPES:
            raise api.StripeError(
                400, f"Invalid type: must be one of {', '.join(ACCOUNT_TYPES)}", param="type"
            )
        country = params.get("country") or PLATFORM_COUNTRY
        agreement = (params.get("tos_acceptance") or {}).get("service_agreement") or "full"
        if agreement not in SERVICE_AGREEMENTS:
            raise api.StripeError(
                400,
                f"Invalid tos_acceptance[service_agreement]: must be one of "
                f"{', '.join(SERVICE_AGREEMENTS)}",
                param="tos_acceptance[service_agreement]",
            )
        requested = [
            name
            for name, ask in (params.get("capabilities") or {}).items()
            if api._bool((ask or {}).get("requested"))  # noqa: SLF001 - the fake's form booleans
        ]
        if agreement == "recipient" and "card_payments" in requested:
            raise api.StripeError(
                400,
                "The `card_payments` capability cannot be requested for an account under the "
                "`recipient` service agreement.",
                param="capabilities[card_payments]",
            )
        if agreement == "full" and country != PLATFORM_COUNTRY:
            # Stripe: cross-border payouts only work with accounts under the recipient agreement
            raise api.StripeError(
                400,
                f"Connected accounts in {country} must be created with "
                "`tos_acceptance[service_agreement]=recipient` when the platform is in "
                f"{PLATFORM_COUNTRY} (cross-border payouts).",
                param="tos_acceptance[service_agreement]",
            )
        with self._state:
            # The platform's account first, so `GET /v1/account` never answers a creator's.
            self._account(request, {}, match)
            account = self._new_connected(kind, country, agreement, requested)
            account["email"] = params.get("email")
            business = params.get("business_profile") or {}
            if business.get("name"):
                account["business_profile"]["name"] = business["name"]
            self._apply_metadata(account, params)
        return 200, self._public(account)

    def _new_connected(
        self: Any,
        kind: str,
        country: str,
        agreement: str,
        requested: list[str],
        account_id: str | None = None,
    ) -> Object:
        account = self._new(
            "account",
            "acct",
            type=kind,
            country=country,
            email=None,
            default_currency="usd",
            charges_enabled=False,
            payouts_enabled=False,
            details_submitted=False,
            capabilities=dict.fromkeys(requested, "inactive"),
            controller={"type": "application", "is_controller": True},
            _connected=True,
        )
        account["tos_acceptance"] = {
            **(account.get("tos_acceptance") or {}),
            "service_agreement": agreement,
        }
        if account_id is not None:  # a test's own id
            del self.objects[account["id"]]
            account["id"] = account_id
            self.objects[account_id] = account
        return account

    def transfer_destination_error(self: Any, destination: str) -> api.StripeError | None:
        """Why Stripe would refuse a transfer to `destination` (None when it would not): an
        account the platform does not have, or one whose `transfers` capability is not active
        (not onboarded yet, or restricted since), with Stripe's codes."""
        account = self.objects.get(destination)
        if account is None or not account.get("_connected"):
            return api.StripeError(
                400,
                f"No such destination: '{destination}'",
                code="resource_missing",
                param="destination",
            )
        if account["capabilities"].get("transfers") != "active":
            return api.StripeError(
                400,
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                code="insufficient_capabilities_for_transfer",
                param="destination",
            )
        return None

    def _connect_account_list(
        self: Any, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        return 200, self._list(
            "account", params, request.path, lambda obj: bool(obj.get("_connected"))
        )

    def _connect_account_retrieve(
        self: Any, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        return 200, self._public(self._connected(match["id"]))

    def _connect_account_update(
        self: Any, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        """Metadata, email and the business profile's name; `account.updated` when changed."""
        with self._state:
            account = self._connected(match["id"])
            previous = copy.deepcopy(account)
            self._apply_metadata(account, params)
            if "email" in params:
                account["email"] = params["email"] or None
            name = (params.get("business_profile") or {}).get("name")
            if name is not None:
                account["business_profile"]["name"] = name or None
            changed = {k: v for k, v in self._public(previous).items() if v != account[k]}
            if changed:
                self.emit(
                    "account.updated",
                    self._public(account),
                    previous_attributes=changed,
                    account=account["id"],
                )
        return 200, self._public(account)

    def _connect_login_link(
        self: Any, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        account = self._connected(match["id"])
        if not account["details_submitted"]:
            raise api.StripeError(
                400,
                "Cannot create a login link for an account that has not completed onboarding.",
                param="account",
            )
        link = api.fixture("login_link")
        link.update(created=self.now(), url=f"{self.url}/test/connect/dashboard/{account['id']}")
        return 200, link

    def _connect_link_create(
        self: Any, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        for name in ("account", "type", "refresh_url", "return_url"):
            if not params.get(name):
                raise api.StripeError(
                    400, f"Missing required param: {name}.", code="parameter_missing", param=name
                )
        if params["type"] not in ("account_onboarding", "account_update"):
            raise api.StripeError(400, f"Invalid type: {params['type']}", param="type")
        self._connected(params["account"])
        with self._state:
            link = self._new(
                "account_link",
                "acctlink",
                expires_at=self.now() + LINK_LIFETIME,
                _account=params["account"],
                _refresh_url=params["refresh_url"],
                _return_url=params["return_url"],
                _used=False,
            )
            link["url"] = f"{self.url}/test/connect/onboarding/{link['id']}"
        public = self._public(link)
        del public["id"]  # Stripe's account links have no id
        return 200, public

    # -- test helpers -------------------------------------------------------------------------

    def complete_onboarding(self: Any, account_id: str) -> Object:
        """Finish an account's onboarding as its owner would on Stripe's pages: details
        submitted, every requested capability active, payouts enabled, charges enabled only
        with `card_payments` (as Stripe's), nothing due; emits `account.updated` (delivered now
        unless `hold_events`). Returns the account."""
        with self._state:
            account = self._connected(account_id)
            capabilities = dict.fromkeys(account["capabilities"], "active")
            self._connect_set(
                account,
                details_submitted=True,
                charges_enabled=capabilities.get("card_payments") == "active",
                payouts_enabled=True,
                capabilities=capabilities,
                currently_due=[],
                disabled_reason=None,
            )
        if not self.hold_events:
            self.flush_events()
        return self._public(account)

    def connected_account(
        self: Any,
        account_id: str | None = None,
        *,
        country: str = PLATFORM_COUNTRY,
        capabilities: tuple[str, ...] = ("transfers",),
        onboarded: bool = True,
    ) -> Object:
        """A connected account as the platform makes them (Express, `capabilities` requested,
        the recipient agreement outside the platform's country), with the test's own id when
        given (a row a test stored), onboarded unless `onboarded=False`. Emits nothing.
        Returns the account; an existing one with that id is answered as it is."""
        with self._state:
            if account_id is not None and account_id in self.objects:
                return self._public(self._connected(account_id))
            agreement = "full" if country == PLATFORM_COUNTRY else "recipient"
            account = self._new_connected(
                "express", country, agreement, list(capabilities), account_id
            )
            if onboarded:
                account.update(
                    details_submitted=True,
                    charges_enabled="card_payments" in capabilities,
                    payouts_enabled=True,
                    capabilities=dict.fromkeys(capabilities, "active"),
                )
                account["requirements"].update(
                    currently_due=[], eventually_due=[], past_due=[], disabled_reason=None
                )
        return self._public(account)

    def require(
        self: Any, account_id: str, currently_due: list[str], *, disabled_reason: str | None = None
    ) -> Object:
        """Stripe asks the account for more (`requirements.currently_due`); with
        `disabled_reason`, charges, payouts and its capabilities stop (transfers to it are
        refused). Emits `account.updated`."""
        with self._state:
            account = self._connected(account_id)
            stopped = disabled_reason is not None
            capabilities = dict(account["capabilities"])
            if stopped:
                capabilities = dict.fromkeys(capabilities, "inactive")
            self._connect_set(
                account,
                charges_enabled=account["charges_enabled"] and not stopped,
                payouts_enabled=account["payouts_enabled"] and not stopped,
                capabilities=capabilities,
                currently_due=list(currently_due),
                disabled_reason=disabled_reason,
            )
        if not self.hold_events:
            self.flush_events()
        return self._public(account)

    def _connect_set(
        self: Any,
        account: Object,
        *,
        currently_due: list[str],
        disabled_reason: str | None,
        **top: Any,
    ) -> None:
        previous = self._public(account)
        account.update(top)
        requirements = account["requirements"]
        requirements.update(
            currently_due=list(currently_due),
            eventually_due=list(currently_due),
            past_due=list(currently_due) if disabled_reason == "requirements.past_due" else [],
            disabled_reason=disabled_reason,
        )
        changed = {k: v for k, v in previous.items() if account.get(k) != v}
        self.emit(
            "account.updated",
            self._public(account),
            previous_attributes=changed,
            account=account["id"],
        )

    # -- the hosted onboarding page -----------------------------------------------------------

    def _connect_page(self: Any, method: str, path: str, out: Exchange) -> bool:
        """GET /test/connect/onboarding/{link}: the stand-in for Stripe's onboarding (a Submit
        button completes it, then back to the link's `return_url`; "Not now" goes back without);
        POST /test/connect/onboarding/{link}/complete. A used or expired link redirects to its
        `refresh_url`, as Stripe does. POST /test/connect/accounts/{id}: `connected_account(id)`
        over HTTP (an onboarded account for a row a test stored; tests/helpers/money.py). False
        for any other path."""
        seeded = re.fullmatch(r"/test/connect/accounts/(acct_[A-Za-z0-9_]+)", path)
        if method == "POST" and seeded is not None:
            out.send_json(200, self.connected_account(seeded[1]))
            return True
        dashboard = re.fullmatch(r"/test/connect/dashboard/([^/]+)", path)
        if dashboard is not None and dashboard[1] in self.objects:
            account = self.objects[dashboard[1]]
            body = (
                f"<p>Express dashboard of <strong>{html.escape(account['id'])}</strong>: "
                f"payouts {'enabled' if account['payouts_enabled'] else 'not enabled'}.</p>"
            )
            page = _hosted_html("Payouts dashboard", body).encode()
            out.send_bytes(200, page, content_type="text/html; charset=utf-8")
            return True
        found = re.fullmatch(r"/test/connect/onboarding/([^/]+?)(/complete)?", path)
        if found is None:
            return False
        link = self.objects.get(found[1])
        if link is None or link["object"] != "account_link":
            body = _hosted_html("Not found", "<p>No such onboarding link.</p>")
            out.send_bytes(404, body.encode(), content_type="text/html; charset=utf-8")
            return True
        if link["_used"] or link["expires_at"] < self.now():
            out.send_bytes(303, b"", headers={"Location": link["_refresh_url"]})
            return True
        if method == "POST" and found[2]:
            link["_used"] = True
            self.complete_onboarding(link["_account"])
            out.send_bytes(303, b"", headers={"Location": link["_return_url"]})
            return True
        account = self._connected(link["_account"])
        due = "".join(
            f"<li>{html.escape(name)}</li>" for name in account["requirements"]["currently_due"]
        )
        lid, back = html.escape(link["id"]), html.escape(link["_return_url"])
        body = (
            f"<p>Setting up payouts for <strong>{html.escape(account['id'])}</strong> "
            f"({html.escape(account['country'])}, "
            f"{html.escape(account['tos_acceptance'].get('service_agreement') or 'full')} "
            "service agreement). No details are needed: Submit completes "
            "onboarding as if Stripe verified everything.</p>"
            f"{f'<p>Stripe would ask for:</p><ul>{due}</ul>' if due else ''}"
            f'<form method="post" action="/test/connect/onboarding/{lid}/complete">'
            '<button type="submit">Submit</button></form>'
            f'<p><a href="{back}">Not now, go back</a></p>'
        )
        out.send_bytes(
            200,
            _hosted_html("Payouts setup", body).encode(),
            content_type="text/html; charset=utf-8",
        )
        return True
