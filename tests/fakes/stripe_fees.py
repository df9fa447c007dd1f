"""FakeStripe's destination charges and application fees (a mixin of `FakeStripe`, issue 15).
The platform does not use them (decision 81: separate charges and transfers); the fake has them
so that a test of code that does gets Stripe's answers, not silence.

    # Checkout (mode=payment) or a PaymentIntent, as a destination charge:
    client.v1.checkout.sessions.create(params={..., "payment_intent_data": {
        "application_fee_amount": 300, "transfer_data": {"destination": "acct_…"}}})
    client.v1.payment_intents.create(params={"amount": 2000, "currency": "usd",
        "payment_method": "pm_card_visa", "confirm": True, "application_fee_amount": 300,
        "transfer_data": {"destination": "acct_…"}})
    fake.add_charge(2000, destination="acct_…", application_fee_amount=300)  # a test knob
    # the charge succeeds → a transfer of amount - fee to the destination (its balance grows)
    # and an application fee object (`application_fee.created`)
    client.v1.refunds.create(params={"charge": …, "amount": 1000, "reverse_transfer": True,
                                     "refund_application_fee": True})
    client.v1.application_fees.list(params={"charge": …})
    client.v1.application_fees.refunds.create(fee_id, params={"amount": 50})

Stripe's rules kept here: a destination charge's transfer may be reversed up to the charge even
when the connected account's balance is short (its balance goes negative), unlike a separate
transfer's (refused, `balance_insufficient`). A refund with `reverse_transfer` reverses the
transfer, and with `refund_application_fee` refunds the fee, "in proportion to the amount
refunded" (Stripe's words; a full refund returns all of it). Stripe does not document the
rounding of a partial one; the fake's rule: after each refund, the total reversed (refunded) is
`round_half_up(transfer (fee) × charge's total refunded ÷ charge amount)`, so partial refunds add
up to exactly the whole. The flags are ignored on a charge that has no transfer or fee, as on
Stripe. A transfer reversal's own `refund_application_fee` refunds the fee in proportion to the
transfer reversed, by the same rule.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.server import RecordedRequest

Object = dict[str, Any]
PLATFORM_APPLICATION = "ca_FakePlatformApplication"


def _error(status: int, message: str, **kwargs: Any) -> Exception:
    from tests.fakes.stripe_api import StripeError

    return StripeError(status, message, **kwargs)


def _param(prefix: str, *parts: str) -> str:
    """A nested parameter's name as Stripe spells it (`payment_intent_data[transfer_data]…`)."""
    head, rest = (prefix, parts) if prefix else (parts[0], parts[1:])
    return head + "".join(f"[{part}]" for part in rest)


def proportion(whole: int, part: int, of: int) -> int:
    """`whole × part ÷ of`, rounded half up (the fake's rule for proportional refunds)."""
    return (2 * whole * part + of) // (2 * of) if of > 0 else 0


class ApplicationFeesMixin:
    """Routes and helpers; `FakeStripe` provides `_new`, `get`, `emit`, `_list`, `_state` and
    `StripeMoneyMixin` the transfers and reversals."""

    def _fees_routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", r"/v1/payment_intents", self._payment_intent_create),
            ("POST", r"/v1/payment_intents/(?P<id>[^/]+)/confirm", self._payment_intent_confirm),
            ("GET", r"/v1/application_fees", self._fee_list),
            ("GET", r"/v1/application_fees/(?P<id>[^/]+)", self._retrieve("application_fee")),
            ("POST", r"/v1/application_fees/(?P<id>[^/]+)/refunds", self._fee_refund_create),
            ("GET", r"/v1/application_fees/(?P<id>[^/]+)/refunds", self._fee_refund_list),
            (
                "GET",
                r"/v1/application_fees/(?P<fee>[^/]+)/refunds/(?P<id>[^/]+)",
                self._fee_refund_retrieve,
            ),
        ]

    # -- destination charges ------------------------------------------------------------------

    @staticmethod
    def _destination_params(params: Object, prefix: str, amount: int | None) -> Object:
        """`transfer_data[destination]`, `transfer_data[amount]`, `application_fee_amount` of a
        PaymentIntent (or Checkout's `payment_intent_data`), checked as Stripe does."""
        from tests.fakes.stripe_api import _int

        transfer_data = params.get("transfer_data") or {}
        fee = params.get("application_fee_amount")
        if not transfer_data and fee is None:
            return {}
        destination = str(transfer_data.get("destination") or "")
        if not destination.startswith("acct_"):
            raise _error(
                400,
                f"No such destination: '{destination}'",
                param=_param(prefix, "transfer_data", "destination"),
                code="resource_missing",
            )
        fee_amount = None if fee is None else _int(fee, _param(prefix, "application_fee_amount"))
        transfer_amount = transfer_data.get("amount")
        if fee_amount is not None and transfer_amount is not None:
            raise _error(
                400,
                "You may only specify one of these parameters: application_fee_amount, "
                "transfer_data[amount].",
                param=_param(prefix, "application_fee_amount"),
            )
        if amount is not None and (fee_amount or 0) > amount:
            raise _error(
                400,
                f"The application fee ({fee_amount}) cannot exceed the amount ({amount}).",
                param=_param(prefix, "application_fee_amount"),
            )
        return {
            "destination": destination,
            "application_fee_amount": fee_amount,
            "transfer_amount": None
            if transfer_amount is None
            else _int(transfer_amount, _param(prefix, "transfer_data", "amount")),
        }

    def _destination_charge(self, intent: Object, charge: Object, terms: Object) -> None:
        """The succeeded `charge` was a destination charge: transfer its amount less the fee to
        the destination (its `source_transaction`; the account's balance grows), and record
        the application fee (`application_fee.created`). Call holding the state lock."""
        if not terms:
            return
        destination, fee = terms["destination"], terms["application_fee_amount"]
        amount = terms["transfer_amount"]
        if amount is None:  # else transfer_data[amount]: the platform keeps the rest
            amount = charge["amount"] - (fee or 0)
        transfer_data = {"destination": destination, "amount": terms["transfer_amount"]}
        intent.update(transfer_data=transfer_data, application_fee_amount=fee)
        charge.update(
            transfer_data=transfer_data, application_fee_amount=fee, destination=destination
        )
        payment = self._new(  # the connected account's side of it (`py_…`)
            "charge",
            "py",
            amount=amount,
            amount_refunded=0,
            currency=charge["currency"],
            status="succeeded",
            paid=True,
            source_transfer=None,
            _account=destination,
        )
        transfer = self._new_transfer(
            amount=amount,
            currency=charge["currency"],
            destination=destination,
            transfer_group=charge.get("transfer_group"),
            source_transaction=charge["id"],
            metadata={},
        )
        transfer["destination_payment"] = payment["id"]
        transfer["_destination_charge"] = True
        payment["source_transfer"] = transfer["id"]
        charge["transfer"] = transfer["id"]
        if fee:
            application_fee = self._new(
                "application_fee",
                "fee",
                account=destination,
                amount=fee,
                amount_refunded=0,
                application=PLATFORM_APPLICATION,
                balance_transaction=None,
                charge=payment["id"],
                originating_transaction=charge["id"],
                currency=charge["currency"],
                fee_source={"charge": payment["id"], "type": "charge"},
                refunded=False,
            )
            application_fee["refunds"] = {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/application_fees/{application_fee['id']}/refunds",
            }
            charge["application_fee"] = application_fee["id"]
            self.emit("application_fee.created", application_fee)

    def _refund_connect(self, charge: Object, refund: Object, params: Object) -> None:
        """A refund's `reverse_transfer` and `refund_application_fee` on a destination charge
        (after `charge.amount_refunded` counts it): in proportion, by the module's rule."""
        if params.get("reverse_transfer") in (True, "true") and charge.get("transfer"):
            transfer = self.get(charge["transfer"], "transfer")
            due = proportion(transfer["amount"], charge["amount_refunded"], charge["amount"])
            amount = min(due - transfer["amount_reversed"], transfer["amount"])
            if amount > 0:
                reversal = self._new_reversal(transfer, amount, {})
                reversal["source_refund"] = refund["id"]
                refund["transfer_reversal"] = reversal["id"]
        if params.get("refund_application_fee") in (True, "true") and charge.get("application_fee"):
            fee = self.get(charge["application_fee"], "application_fee")
            due = proportion(fee["amount"], charge["amount_refunded"], charge["amount"])
            amount = min(due, fee["amount"]) - fee["amount_refunded"]
            if amount > 0:
                self._new_fee_refund(fee, amount, {})

    def _reversal_refunds_fee(self, transfer: Object, params: Object) -> None:
        """A transfer reversal's `refund_application_fee`: the fee of the destination charge the
        transfer came from, in proportion to the transfer reversed so far."""
        if params.get("refund_application_fee") not in (True, "true"):
            return
        charge = self.objects.get(transfer.get("source_transaction") or "") or {}
        if not charge.get("application_fee"):
            return
        fee = self.get(charge["application_fee"], "application_fee")
        due = proportion(fee["amount"], transfer["amount_reversed"], transfer["amount"])
        amount = min(due, fee["amount"]) - fee["amount_refunded"]
        if amount > 0:
            self._new_fee_refund(fee, amount, {})

    def _fee_list(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        """`charge`: the fees taken from that charge (the connected account's `py_…`, or the
        platform's destination charge it originated from)."""
        charge = params.get("charge")
        return 200, self._list(
            "application_fee",
            params,
            request.path,
            lambda fee: charge in (None, fee["charge"], fee["originating_transaction"]),
        )

    # -- application fee refunds --------------------------------------------------------------

    def _new_fee_refund(self, fee: Object, amount: int, params: Object) -> Object:
        left = fee["amount"] - fee["amount_refunded"]
        if fee["refunded"] or left <= 0:
            raise _error(
                400,
                f"Application fee {fee['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        if amount > left:
            raise _error(
                400,
                f"Refund amount ({amount}) is greater than the amount left on application fee "
                f"{fee['id']} ({left}).",
                param="amount",
            )
        refund = self._new(
            "fee_refund",
            "fr",
            amount=amount,
            currency=fee["currency"],
            fee=fee["id"],
            balance_transaction=None,
        )
        self._apply_metadata(refund, params)
        fee["amount_refunded"] += amount
        fee["refunded"] = fee["amount_refunded"] == fee["amount"]
        fee["refunds"]["data"].insert(0, self._public(refund))
        self.emit("application_fee.refunded", fee)
        return refund

    def _fee_refund_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        from tests.fakes.stripe_money import _amount

        fee = self.get(match["id"], "application_fee")
        left = fee["amount"] - fee["amount_refunded"]
        amount = _amount(params["amount"], "amount") if "amount" in params else left
        return 200, self._public(self._new_fee_refund(fee, amount, params))

    def _fee_refund_list(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        fee_id = self.get(match["id"], "application_fee")["id"]
        return 200, self._list("fee_refund", params, request.path, lambda r: r["fee"] == fee_id)

    def _fee_refund_retrieve(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        refund = self.get(match["id"], "fee_refund")
        if refund["fee"] != match["fee"]:
            raise _error(404, f"No such fee refund: '{match['id']}'", code="resource_missing")
        return 200, self._public(refund)

    # -- PaymentIntents created through the API ------------------------------------------------

    def _payment_intent_create(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        """A PaymentIntent for `amount` in `currency`; with `confirm=true` and a
        `payment_method` it succeeds at once (a test card that needs no action), making the
        charge (and, with `transfer_data`, the destination charge's transfer and fee)."""
        from tests.fakes.stripe_money import _amount

        for name in ("amount", "currency"):
            if name not in params:
                raise _error(
                    400, f"Missing required param: {name}.", code="parameter_missing", param=name
                )
        amount = _amount(params["amount"], "amount")
        terms = self._destination_params(params, "", amount)
        if params.get("customer"):
            self.get(params["customer"], "customer")
        intent = self._new(
            "payment_intent",
            "pi",
            amount=amount,
            amount_received=0,
            amount_capturable=0,
            currency=str(params["currency"]).lower(),
            customer=params.get("customer"),
            payment_method=params.get("payment_method"),
            status="requires_payment_method"
            if not params.get("payment_method")
            else "requires_confirmation",
            invoice=None,
            latest_charge=None,
            application=None,
            application_fee_amount=None,
            on_behalf_of=None,
            review=None,
            last_payment_error=None,
            next_action=None,
            transfer_data=None,
            transfer_group=params.get("transfer_group"),
        )
        intent["_terms"] = terms
        self._apply_metadata(intent, params)
        self.emit("payment_intent.created", intent)
        if params.get("confirm") in (True, "true"):
            self._confirm(intent, params)
        return 200, self._public(intent)

    def _payment_intent_confirm(
        self, request: RecordedRequest, params: Object, match: re.Match[str]
    ) -> tuple[int, Object]:
        intent = self.get(match["id"], "payment_intent")
        self._confirm(intent, params)
        return 200, self._public(intent)

    def _confirm(self, intent: Object, params: Object) -> None:
        if intent["status"] == "succeeded":
            raise _error(
                400,
                "This PaymentIntent's status is succeeded, so it cannot be confirmed.",
                code="payment_intent_unexpected_state",
            )
        method = params.get("payment_method") or intent["payment_method"]
        if not method:
            raise _error(
                400,
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
                param="payment_method",
            )
        paid, charge = self._succeeded_payment(
            intent["amount"], intent["currency"], intent["customer"], payment_method=method
        )
        # one intent: the stored one takes the charge; the helper's spare intent is dropped
        del self.objects[paid["id"]]
        charge["payment_intent"] = intent["id"]
        charge["transfer_group"] = intent["transfer_group"]
        charge["metadata"] = dict(intent["metadata"])
        intent.update(
            status="succeeded",
            payment_method=method,
            amount_received=intent["amount"],
            latest_charge=charge["id"],
        )
        self._destination_charge(intent, charge, intent.get("_terms") or {})
        self.emit("charge.succeeded", charge)
        self.emit("payment_intent.succeeded", intent)
