"""FakeStripe's money after a charge (a mixin of `FakeStripe`, issue 15): charges and payment
intents, refunds, transfers to connected accounts and their reversals, disputes and payouts.

    charge = fake.add_charge(2500, "usd", metadata={"purchase_id": "7"})  # a paid charge + PI
    client.v1.transfers.create(params={"amount": 2000, "currency": "usd",
                                       "destination": "acct_…"})
    fake.pay_out("acct_…")          # the connected account's bank payout: its balance → 0
    client.v1.transfers.reversals.create(transfer_id, params={"amount": 500})  # 400 when short
    fake.dispute(charge["id"])      # charge.dispute.created
    fake.close_dispute(dispute_id, won=False)  # charge.dispute.closed

Each connected account has a balance (`balance_of`): transfers add to it, reversals take from
it and are refused, as Stripe refuses them, when it is short. Requests go through FakeStripe's
dispatch, so idempotency keys, `fail_next`, `hold_after` and the delivery knobs apply.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.server import RecordedRequest

Object = dict[str, Any]


def _error(status: int, message: str, **kwargs: Any) -> Exception:
    from tests.fakes.stripe_api import StripeError

    return StripeError(status, message, **kwargs)


def _amount(value: Any, param: str) -> int:
    from tests.fakes.stripe_api import _int

    amount = _int(value, param)
    if amount <= 0:
        raise _error(400, f"Invalid {param}: must be positive.", param=param)
    return amount


# Stripe's messages for the failure codes tests use (https://docs.stripe.com/api/payouts/failures).
FAILURES = {
    "account_closed": "The bank account has been closed.",
    "no_account": "The bank account details on file are probably incorrect.",
}


def stripe_fee(amount: int) -> int:
    """The fake's processing fee for a card charge of `amount` (minor units): Stripe's
    standard US card pricing, 2.9 % + 30 ¢, with the percentage rounded half up to the cent,
    and never more than the charge. The fake applies it in every currency (real Stripe prices
    by country and card); a test that needs other figures reads them from the balance
    transaction rather than recomputing this."""
    return min(amount, (amount * 29 + 500) // 1000 + 30)


OPEN_DISPUTE = ("warning_needs_response", "warning_under_review", "needs_response", "under_review")
CLOSED_DISPUTE = ("warning_closed", "won", "lost", "prevented")
REVIEWED = {"needs_response": "under_review", "warning_needs_response": "warning_under_review"}
DISPUTE_FEE = 1500  # Stripe's US dispute fee, 15.00 USD (the fake applies it in every currency)


class StripeMoneyMixin:
    """Routes and test knobs; `FakeStripe` provides `_new`, `get`, `emit`, `_list`, `_state`."""

    def _money_routes(self) -> list[tuple[str, str, Any]]:
        """The routes, appended to FakeStripe's table by its __init__ (which calls this once,
        so the connected accounts' balances start empty here too)."""
        self.connected_balances: dict[str, int] = {}
        return [
            ("GET", r"/v1/charges/(?P<id>[^/]+)", self._retrieve("charge")),
            ("GET", r"/v1/payment_intents/(?P<id>[^/]+)", self._retrieve("payment_intent")),
            ("POST", r"/v1/refunds", self._refund_create),
            ("GET", r"/v1/refunds", self._list_of("refund", "charge", "payment_intent")),
            ("GET", r"/v1/refunds/(?P<id>[^/]+)", self._retrieve("refund")),
            ("POST", r"/v1/transfers", self._transfer_create),
            ("GET", r"/v1/transfers", self._list_of("transfer", "destination", "transfer_group")),
            ("GET", r"/v1/transfers/(?P<id>[^/]+)", self._retrieve("transfer")),
            ("POST", r"/v1/transfers/(?P<id>[^/]+)/reversals", self._reversal_create),
            ("GET", r"/v1/transfers/(?P<id>[^/]+)/reversals", self._reversal_list),
            (
                "GET",
                r"/v1/transfers/(?P<transfer>[^/]+)/reversals/(?P<id>[^/]+)",
                self._reversal_retrieve,
            ),
            ("GET", r"/v1/disputes", self._list_of("dispute", "charge", "payment_intent")),
            ("GET", r"/v1/disputes/(?P<id>[^/]+)", self._retrieve("dispute")),
            (
                "GET",
                r"/v1/balance_transactions",
                self._list_of("balance_transaction", "source", "type"),
            ),
            (
                "GET",
                r"/v1/balance_transactions/(?P<id>[^/]+)",
                self._retrieve("balance_transaction"),
            ),
            ("GET", r"/v1/payouts", self._payout_list),
            ("GET", r"/v1/payouts/(?P<id>[^/]+)", self._payout_retrieve),
        ]

    # -- test knobs ---------------------------------------------------------------------------

    def add_charge(
        self,
        amount: int,
        currency: str = "usd",
        customer: str | None = None,
        metadata: dict[str, str] | None = None,
        *,
        destination: str | None = None,
        application_fee_amount: int | None = None,
    ) -> Object:
        """A succeeded charge and its payment intent (emits `payment_intent.succeeded` and
        `charge.succeeded`); returns the charge. With `destination` (an `acct_…`), a
        destination charge: the amount less `application_fee_amount` is transferred there and
        the fee recorded (tests/fakes/stripe_fees.py)."""
        terms: Object = {}
        if destination is not None:
            terms = {
                "destination": destination,
                "application_fee_amount": application_fee_amount,
                "transfer_amount": None,
            }
        with self._state:
            intent, charge = self._succeeded_payment(amount, currency, customer)
            intent["metadata"] = dict(metadata or {})
            charge["metadata"] = dict(metadata or {})
            self._destination_charge(intent, charge, terms)
            self.emit("payment_intent.succeeded", intent)
            self.emit("charge.succeeded", charge)
        if not self.hold_events:
            self.flush_events()
        return self._public(charge)

    def _succeeded_payment(
        self, amount: int, currency: str, customer: str | None, payment_method: str | None = None
    ) -> tuple[Object, Object]:
        """A succeeded PaymentIntent and its Charge (with an empty refunds list), stored, no
        event sent. Call holding the state lock."""
        intent = self._new(
            "payment_intent",
            "pi",
            amount=amount,
            amount_received=amount,
            amount_capturable=0,
            currency=currency,
            customer=customer,
            status="succeeded",
            payment_method=payment_method,
            invoice=None,
            latest_charge=None,
            application=None,
            application_fee_amount=None,
            on_behalf_of=None,
            review=None,
            last_payment_error=None,
            next_action=None,
            transfer_data=None,
            transfer_group=None,
        )
        charge = self._new(
            "charge",
            "ch",
            amount=amount,
            amount_captured=amount,
            amount_refunded=0,
            refunded=False,
            disputed=False,
            captured=True,
            paid=True,
            status="succeeded",
            currency=currency,
            customer=customer,
            payment_intent=intent["id"],
            payment_method=payment_method,
            balance_transaction=None,
            invoice=None,
            application=None,
            application_fee=None,
            application_fee_amount=None,
            destination=None,
            on_behalf_of=None,
            source_transfer=None,
            transfer=None,
            transfer_data=None,
            transfer_group=None,
            review=None,
            failure_code=None,
            failure_message=None,
        )
        charge["refunds"] = {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/charges/{charge['id']}/refunds",
        }
        intent["latest_charge"] = charge["id"]
        self._charge_settled(charge)
        return intent, charge

    def _charge_settled(self, charge: Object) -> Object:
        """The platform's balance transaction for a succeeded charge (`charge.balance_transaction`
        is its id): Stripe's fee by the fake's rule `stripe_fee`, net = amount - fee, available
        two days later (Stripe's standard US payout schedule). Call holding the state lock."""
        fee = stripe_fee(charge["amount"])
        transaction = self._new(
            "balance_transaction",
            "txn",
            amount=charge["amount"],
            currency=charge["currency"],
            description=None,
            fee=fee,
            fee_details=[
                {
                    "amount": fee,
                    "application": None,
                    "currency": charge["currency"],
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ],
            net=charge["amount"] - fee,
            reporting_category="charge",
            source=charge["id"],
            status="pending",
            type="charge",
            available_on=self.now() + 2 * 86400,
        )
        charge["balance_transaction"] = transaction["id"]
        return transaction

    def balance_of(self, account: str) -> int:
        """The connected account's balance in cents (transfers in, reversals and payouts out)."""
        with self._state:
            return self.connected_balances.get(account, 0)

    def pay_out(self, account: str, *, failure_code: str | None = None) -> Object:
        """The connected account's payout to its bank: its whole balance leaves Stripe (after
        which a reversal of an earlier transfer finds the balance short); `payout.paid`, an
        event of the connected account. With `failure_code` (e.g. "account_closed") the bank
        refuses it: `payout.failed`, and the money is back in the account's balance."""
        with self._state:
            amount = self.connected_balances.get(account, 0)
            payout = self._new(
                "payout",
                "po",
                amount=amount,
                status="failed" if failure_code else "paid",
                destination=self.new_id("ba"),  # the account's bank account
                balance_transaction=None,
                failure_balance_transaction=None,
                failure_code=failure_code,
                failure_message=FAILURES.get(failure_code or "", failure_code),
                _account=account,
            )
            if failure_code is None:
                self.connected_balances[account] = 0
            self.emit(f"payout.{payout['status']}", self._public(payout), account=account)
        if not self.hold_events:
            self.flush_events()
        return self._public(payout)

    def dispute(
        self,
        charge_id: str,
        *,
        amount: int | None = None,
        inquiry: bool = False,
        reason: str = "fraudulent",
    ) -> Object:
        """The buyer disputes the charge (emits `charge.dispute.created`); returns the dispute.
        A chargeback is `needs_response` and Stripe takes the amount and its dispute fee from
        the balance at once (`charge.dispute.funds_withdrawn`, the dispute's
        `balance_transactions`). With `inquiry`, an inquiry (`warning_needs_response`): no
        money moves; it closes as `warning_closed` or escalates (`update_dispute`)."""
        with self._state:
            charge = self.get(charge_id, "charge")
            dispute = self._new(
                "dispute",
                "dp",
                charge=charge_id,
                payment_intent=charge["payment_intent"],
                amount=charge["amount"] if amount is None else amount,
                currency=charge["currency"],
                status="warning_needs_response" if inquiry else "needs_response",
                reason=reason,
                is_charge_refundable=inquiry,
                balance_transactions=[],
            )
            charge["disputed"] = True
            self.emit("charge.dispute.created", dispute)
            if not inquiry:
                self._dispute_funds(dispute, withdrawn=True)
        if not self.hold_events:
            self.flush_events()
        return self._public(dispute)

    def update_dispute(self, dispute_id: str, *, status: str | None = None) -> Object:
        """The dispute moves on (emits `charge.dispute.updated` with the previous status):
        by default evidence went in (`needs_response` → `under_review`,
        `warning_needs_response` → `warning_under_review`); `status="needs_response"`
        escalates an inquiry to a chargeback (the funds are withdrawn then)."""
        with self._state:
            dispute = self.get(dispute_id, "dispute")
            current = dispute["status"]
            if current in CLOSED_DISPUTE:
                raise _error(400, f"Dispute {dispute_id} is already closed.")
            status = status or REVIEWED.get(current, current)
            if status not in OPEN_DISPUTE:
                raise _error(400, f"Invalid status for an open dispute: {status}.", param="status")
            dispute["status"] = status
            self.emit("charge.dispute.updated", dispute, previous_attributes={"status": current})
            if current.startswith("warning_") and not status.startswith("warning_"):
                dispute["is_charge_refundable"] = False
                self._dispute_funds(dispute, withdrawn=True)
        if not self.hold_events:
            self.flush_events()
        return self._public(dispute)

    def close_dispute(
        self, dispute_id: str, *, won: bool | None = None, status: str | None = None
    ) -> Object:
        """The dispute ends (emits `charge.dispute.closed`); returns it. `won=True`: `won`
        (a chargeback's funds come back: `charge.dispute.funds_reinstated`), or for an
        inquiry `warning_closed`; `won=False`: `lost`. Or name the `status`: `won`, `lost`,
        `warning_closed` or `prevented` (Stripe's status for a chargeback stopped before it
        was filed, e.g. by Visa's Rapid Dispute Resolution; the fake sends the status and the
        event only, not the refund that resolution makes)."""
        with self._state:
            dispute = self.get(dispute_id, "dispute")
            if dispute["status"] in CLOSED_DISPUTE:
                raise _error(400, f"Dispute {dispute_id} is already closed.")
            inquiry = dispute["status"].startswith("warning_")
            if status is None:
                if won is None:
                    raise _error(400, "Say how the dispute ends: won, or a status.")
                status = ("warning_closed" if inquiry else "won") if won else "lost"
            if status not in CLOSED_DISPUTE:
                raise _error(400, f"Invalid closing status: {status}.", param="status")
            dispute["status"] = status
            if status == "won" and dispute["balance_transactions"]:
                self._dispute_funds(dispute, withdrawn=False)
            self.emit("charge.dispute.closed", dispute)
        if not self.hold_events:
            self.flush_events()
        return self._public(dispute)

    def _dispute_funds(self, dispute: Object, *, withdrawn: bool) -> None:
        """The balance transaction of a chargeback's funds leaving (the amount and Stripe's
        dispute fee, `DISPUTE_FEE`) or coming back (the amount; the fee is kept), on the
        dispute, and its event. Call holding the state lock."""
        amount = dispute["amount"] if not withdrawn else -dispute["amount"]
        fee = DISPUTE_FEE if withdrawn else 0
        transaction = self._new(
            "balance_transaction",
            "txn",
            amount=amount,
            currency=dispute["currency"],
            description=f"Chargeback {'withdrawal' if withdrawn else 'reversal'} for "
            f"{dispute['charge']}",
            fee=fee,
            fee_details=[]
            if not fee
            else [
                {
                    "amount": fee,
                    "application": None,
                    "currency": dispute["currency"],
                    "description": "Dispute fee",
                    "type": "stripe_fee",
                }
            ],
            net=amount - fee,
            reporting_category="dispute" if withdrawn else "dispute_reversal",
            source=dispute["id"],
            status="available",
            type="adjustment",
            available_on=self.now(),
        )
        dispute["balance_transactions"].append(self._public(transaction))
        event = "funds_withdrawn" if withdrawn else "funds_reinstated"
        self.emit(f"charge.dispute.{event}", dispute)

    # -- handlers -----------------------------------------------------------------------------

    def _refund_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        if params.get("charge"):
            charge = self.get(params["charge"], "charge")
        elif params.get("payment_intent"):
            intent = self.get(params["payment_intent"], "payment_intent")
            charge = self.get(intent["latest_charge"], "charge")
        else:
            raise _error(
                400,
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                code="parameter_missing",
            )
        left = charge["amount"] - charge["amount_refunded"]
        amount = _amount(params["amount"], "amount") if "amount" in params else left
        if amount > left:
            raise _error(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                param="amount",
                code="amount_too_large",
            )
        if charge["disputed"] and not any(  # an inquiry leaves it refundable; a chargeback not
            o["object"] == "dispute" and o["charge"] == charge["id"] and o["is_charge_refundable"]
            for o in self.objects.values()
        ):
            raise _error(400, f"Charge {charge['id']} has been disputed.", code="charge_disputed")
        refund = self._new(
            "refund",
            "re",
            amount=amount,
            charge=charge["id"],
            payment_intent=charge["payment_intent"],
            currency=charge["currency"],
            status="succeeded",
            reason=params.get("reason"),
            balance_transaction=None,
            transfer_reversal=None,
            source_transfer_reversal=None,
        )
        self._apply_metadata(refund, params)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._refund_connect(charge, refund, params)  # reverse_transfer, refund_application_fee
        charge["refunds"]["data"].insert(0, self._public(refund))
        self.emit("refund.created", refund)
        self.emit("charge.refunded", charge)
        return 200, self._public(refund)

    def _transfer_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        destination = params.get("destination") or ""
        refused = self.transfer_destination_error(destination)  # stripe_connect.py
        if refused is not None:
            raise refused
        transfer = self._new_transfer(
            amount=_amount(params.get("amount"), "amount"),
            currency=params.get("currency") or "usd",
            destination=destination,
            transfer_group=params.get("transfer_group"),
            source_transaction=params.get("source_transaction"),
            metadata=params.get("metadata") or {},
            description=params.get("description"),
        )
        return 200, self._public(transfer)

    def _new_transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str | None,
        source_transaction: str | None,
        metadata: Object,
        description: str | None = None,
    ) -> Object:
        """A transfer to a connected account, its balance credited (`transfer.created`)."""
        transfer = self._new(
            "transfer",
            "tr",
            amount=amount,
            amount_reversed=0,
            reversed=False,
            currency=currency,
            destination=destination,
            description=description,
            transfer_group=transfer_group,
            source_transaction=source_transaction,
            balance_transaction=None,
            destination_payment=None,
        )
        transfer["reversals"] = {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/transfers/{transfer['id']}/reversals",
        }
        self._apply_metadata(transfer, {"metadata": metadata})
        self.connected_balances[destination] = self.connected_balances.get(destination, 0) + amount
        self.emit("transfer.created", transfer)
        return transfer

    def _reversal_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        transfer = self.get(match["id"], "transfer")
        left = transfer["amount"] - transfer["amount_reversed"]
        amount = _amount(params["amount"], "amount") if "amount" in params else left
        if amount > left:
            raise _error(
                400,
                f"Reversal amount ({amount}) is greater than the amount left on transfer "
                f"{transfer['id']} ({left}).",
                param="amount",
            )
        account = transfer["destination"]
        # a destination charge's transfer may be reversed up to the charge whatever the
        # account's balance (it goes negative); a separate transfer only from what is there
        if not transfer.get("_destination_charge") and (
            self.connected_balances.get(account, 0) < amount
        ):
            raise _error(
                400,
                f"Insufficient funds in the connected account {account} to reverse "
                f"{amount}: its balance is {self.connected_balances.get(account, 0)}.",
                code="balance_insufficient",
            )
        reversal = self._new_reversal(transfer, amount, params)
        self._reversal_refunds_fee(transfer, params)
        return 200, self._public(reversal)

    def _new_reversal(self, transfer: Object, amount: int, params: Object) -> Object:
        """Reverse `amount` of `transfer`: out of the account's balance (`transfer.reversed`)."""
        reversal = self._new(
            "transfer_reversal",
            "trr",
            amount=amount,
            currency=transfer["currency"],
            transfer=transfer["id"],
            balance_transaction=None,
            destination_payment_refund=None,
            source_refund=None,
        )
        self._apply_metadata(reversal, params)
        self.connected_balances[transfer["destination"]] -= amount
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
        transfer["reversals"]["data"].insert(0, self._public(reversal))
        self.emit("transfer.reversed", transfer)
        return reversal

    def _reversal_list(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        transfer_id = self.get(match["id"], "transfer")["id"]
        return 200, self._list(
            "transfer_reversal", params, request.path, lambda r: r["transfer"] == transfer_id
        )

    def _reversal_retrieve(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        reversal = self.get(match["id"], "transfer_reversal")
        if reversal["transfer"] != match["transfer"]:
            raise _error(
                404, f"No such transfer reversal: '{match['id']}'", code="resource_missing"
            )
        return 200, self._public(reversal)

    def _payout_list(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        """With `Stripe-Account`, that connected account's payouts (else every payout)."""
        account = request.headers.get("stripe-account")
        return 200, self._list(
            "payout",
            params,
            request.path,
            lambda p: (
                account in (None, p.get("_account"))
                and params.get("destination") in (None, p["destination"])
            ),
        )

    def _payout_retrieve(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        """A connected account's payout is found only with its `Stripe-Account` header."""
        payout = self.get(match["id"], "payout")
        if payout.get("_account") != request.headers.get("stripe-account"):
            raise _error(
                404, f"No such payout: '{match['id']}'", code="resource_missing", param="id"
            )
        return 200, self._public(payout)
