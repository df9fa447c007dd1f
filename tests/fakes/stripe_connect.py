"""Stripe Connect for `FakeStripe`: connected (Express) accounts, account links to a hosted
onboarding page, login links, and `account.updated` when an account changes.

    account = client.v1.accounts.create(params={"type": "express", "country": "US"})
    link = client.v1.account_links.create(params={"account": account.id, ...})
    # a person opens link.url (the fake's /test/connect/onboarding/<id> page) and submits it,
    # or a test calls:
    fake.complete_onboarding(account.id)  # details submitted, charges and payouts enabled

A new account needs what Stripe's example account needs (`requirements.currently_due`), with
charges and payouts disabled until onboarding completes. Links are single use and expire after
five minutes, as Stripe's do: opening a used or expired one redirects to its `refresh_url`.
Connected accounts are kept apart from the platform's own (`GET /v1/account`).
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
        with self._state:
            # The platform's account first, so `GET /v1/account` never answers a creator's.
            self._account(request, {}, match)
            account = self._new(
                "account",
                "acct",
                type=kind,
                country=params.get("country") or "US",
                email=params.get("email"),
                default_currency="usd",
                charges_enabled=False,
                payouts_enabled=False,
                details_submitted=False,
                capabilities={"transfers": "inactive"},
                controller={"type": "application", "is_controller": True},
                _connected=True,
            )
            business = params.get("business_profile") or {}
            if business.get("name"):
                account["business_profile"]["name"] = business["name"]
            self._apply_metadata(account, params)
        return 200, self._public(account)

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
        submitted, charges and payouts enabled, nothing due; emits `account.updated` (delivered
        now unless `hold_events`). Returns the account."""
        with self._state:
            account = self._connected(account_id)
            self._connect_set(
                account,
                details_submitted=True,
                charges_enabled=True,
                payouts_enabled=True,
                capabilities={"transfers": "active", "card_payments": "active"},
                currently_due=[],
                disabled_reason=None,
            )
        if not self.hold_events:
            self.flush_events()
        return self._public(account)

    def require(
        self: Any, account_id: str, currently_due: list[str], *, disabled_reason: str | None = None
    ) -> Object:
        """Stripe asks the account for more (`requirements.currently_due`); with
        `disabled_reason`, charges and payouts stop. Emits `account.updated`."""
        with self._state:
            account = self._connected(account_id)
            stopped = disabled_reason is not None
            self._connect_set(
                account,
                charges_enabled=account["charges_enabled"] and not stopped,
                payouts_enabled=account["payouts_enabled"] and not stopped,
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
        `refresh_url`, as Stripe does. False for any other path."""
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
            f"({html.escape(account['country'])}). No details are needed: Submit completes "
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
