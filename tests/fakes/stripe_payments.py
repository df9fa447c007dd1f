"""FakeStripe's payments (issue 15, buying paid listings): Checkout in `payment` and `setup`
mode, inline `price_data` line items (any mode), PaymentIntents, Charges, SetupIntents and
PaymentMethods, and invoice items that wait for the customer's next invoice.

    session = client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [
        {"price_data": {"currency": "usd", "unit_amount": 1900,
                        "product_data": {"name": "Agent"}}, "quantity": 1}], ...})
    fake.complete_checkout(session.id)  # PaymentIntent + Charge; charge.succeeded,
                                        # payment_intent.succeeded, checkout.session.completed
    # mode=setup: a SetupIntent and a PaymentMethod, made the customer's
    # invoice_settings.default_payment_method; setup_intent.succeeded, checkout.session.completed
    client.v1.invoice_items.create(params={"customer": ..., "amount": 25, "currency": "usd"})
    fake.close_period(subscription_id)  # the pending items are lines of that invoice
    # or a standalone invoice taking them (`pending_invoice_items_behavior=include`):
    invoice = client.v1.invoices.create(params={"customer": ..., "auto_advance": True,
                                                "pending_invoice_items_behavior": "include"})
    client.v1.invoices.finalize_invoice(invoice.id)  # open (invoice.finalized)
    fake.collect_invoice(invoice.id)  # Stripe's automatic attempt: invoice.paid, or with
                                      # fail=True invoice.payment_failed (left open)
    client.v1.invoice_payments.list(params={"invoice": invoice.id})  # its PaymentIntent

A paid invoice (any: a subscription's too) has a PaymentIntent and a Charge for its amount, and
an `invoice_payment` linking them (API 2025-03+: invoices carry no `payment_intent`/`charge`);
`POST /v1/invoices/{id}/pay` with `paid_out_of_band=true` pays it without one. The payment's
own events (`payment_intent.succeeded`, `charge.succeeded`) are not emitted.

A mixin of `FakeStripe` (tests/fakes/stripe_api.py): it uses its `_new`, `emit`, `get` and
`_public`, so the fault knobs (`fail_next`, holds, duplicate and shuffled delivery) apply.
"""

from __future__ import annotations

import copy
import re
from typing import Any

Object = dict[str, Any]


class PaymentsMixin:
    def _payments_routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", r"/v1/invoiceitems", self._invoice_item_create),
            ("GET", r"/v1/invoiceitems", self._list_of("invoiceitem", "customer")),
            ("GET", r"/v1/invoiceitems/(?P<id>[^/]+)", self._retrieve("invoiceitem")),
            ("GET", r"/v1/invoices/(?P<id>[^/]+)/lines", self._invoice_lines),
            ("POST", r"/v1/invoices", self._invoice_create),
            ("POST", r"/v1/invoices/(?P<id>[^/]+)/finalize", self._invoice_finalize),
            (
                "GET",
                r"/v1/invoice_payments",
                self._list_of("invoice_payment", "invoice", "status", "payment"),
            ),
            ("GET", r"/v1/setup_intents/(?P<id>[^/]+)", self._retrieve("setup_intent")),
            ("GET", r"/v1/payment_methods/(?P<id>[^/]+)", self._retrieve("payment_method")),
        ]

    # -- inline prices ---------------------------------------------------------------------

    def _line_items_priced(self, line_items: list[Object]) -> list[Object]:
        """Checkout's line items with each `price_data` made a Price (and its product), as
        Stripe does; a `price` must exist. Quantities must be integers."""
        from tests.fakes.stripe_api import StripeError, _int

        priced = []
        for index, item in enumerate(line_items):
            item = dict(item)
            data = item.pop("price_data", None)
            if data is not None:
                item["price"] = self._inline_price(data, index)["id"]
            self.get(item.get("price", ""), "price")
            if "quantity" in item:
                _int(item["quantity"], f"line_items[{index}][quantity]")
            elif data is not None and not (data.get("recurring") or {}):
                raise StripeError(
                    400,
                    "Missing required param: line_items[0][quantity].",
                    param=f"line_items[{index}][quantity]",
                )
            priced.append(item)
        return priced

    def _inline_price(self, data: Object, index: int) -> Object:
        from tests.fakes.stripe_api import StripeError, _int

        param = f"line_items[{index}][price_data]"
        if not data.get("currency") or data.get("unit_amount") is None:
            raise StripeError(400, f"Missing required param: {param}[unit_amount].", param=param)
        product_data = data.get("product_data") or {}
        if data.get("product"):
            product = self.get(data["product"], "product")
        elif product_data.get("name"):
            product = self._new(
                "product",
                "prod",
                name=product_data["name"],
                description=None,
                active=True,
                default_price=None,
                updated=self.now(),
            )
            self._apply_metadata(product, product_data)
        else:
            raise StripeError(400, f"Missing required param: {param}[product_data][name].")
        recurring = data.get("recurring")
        amount = _int(data["unit_amount"], f"{param}[unit_amount]")
        return self._new(
            "price",
            "price",
            currency=data["currency"].lower(),
            product=product["id"],
            lookup_key=None,
            nickname=None,
            active=False,  # Stripe makes inline prices inactive: they serve one session
            recurring=None
            if not recurring
            else {
                "interval": recurring.get("interval", "month"),
                "interval_count": _int(recurring.get("interval_count", 1), "interval_count"),
                "meter": None,
                "usage_type": "licensed",
                "trial_period_days": None,
            },
            type="recurring" if recurring else "one_time",
            unit_amount=amount,
            unit_amount_decimal=str(amount),
            billing_scheme="per_unit",
            tiers_mode=None,
        )

    # -- checkout completion: payment and setup ------------------------------------------------

    def _complete_payment_or_setup(self, session: Object) -> Object:
        """Complete a `payment` session (PaymentIntent + Charge, paid) or a `setup` session
        (SetupIntent + PaymentMethod, the customer's default for invoices). Returns the
        intent. Called under the fake's state lock."""
        params = session.get("_params") or {}
        if not session["customer"]:
            customer = self._new(
                "customer", "cus", email=session["customer_email"], name=None, discount=None
            )
            self.emit("customer.created", customer)
            session["customer"] = customer["id"]
        method = self._new(
            "payment_method",
            "pm",
            customer=session["customer"],
            type="card",
        )
        if session["mode"] == "setup":
            setup_data = params.get("setup_intent_data") or {}
            intent = self._new(
                "setup_intent",
                "seti",
                customer=session["customer"],
                payment_method=method["id"],
                status="succeeded",
                usage="off_session",
                latest_attempt=None,
                mandate=None,
                single_use_mandate=None,
                on_behalf_of=None,
                application=None,
                last_setup_error=None,
                next_action=None,
            )
            self._apply_metadata(intent, setup_data)
            customer = self.get(session["customer"], "customer")
            previous = copy.deepcopy(customer["invoice_settings"])
            customer["invoice_settings"] = {
                **(customer.get("invoice_settings") or {}),
                "default_payment_method": method["id"],
            }
            session.update(url=None, status="complete", payment_status="no_payment_required")
            session["setup_intent"] = intent["id"]
            self.emit("setup_intent.succeeded", intent)
            self.emit(
                "customer.updated", customer, previous_attributes={"invoice_settings": previous}
            )
            self.emit("checkout.session.completed", self._public(session))
            return intent
        total = 0
        currency = "usd"
        for item in session["_line_items"]:
            price = self.get(item["price"], "price")
            total += (price["unit_amount"] or 0) * int(item.get("quantity") or 1)
            currency = price["currency"]
        intent_data = params.get("payment_intent_data") or {}
        intent = self._new(
            "payment_intent",
            "pi",
            amount=total,
            amount_received=total,
            amount_capturable=0,
            currency=currency,
            customer=session["customer"],
            payment_method=method["id"],
            status="succeeded",
            transfer_group=intent_data.get("transfer_group"),
            transfer_data=None,
            application_fee_amount=None,
            on_behalf_of=None,
            application=None,
            invoice=None,
            review=None,
            last_payment_error=None,
            next_action=None,
            latest_charge=None,
        )
        self._apply_metadata(intent, intent_data)
        charge = self._new(
            "charge",
            "ch",
            amount=total,
            amount_captured=total,
            amount_refunded=0,
            currency=currency,
            customer=session["customer"],
            payment_intent=intent["id"],
            payment_method=method["id"],
            status="succeeded",
            paid=True,
            captured=True,
            refunded=False,
            disputed=False,
            transfer_group=intent["transfer_group"],
            transfer=None,
            transfer_data=None,
            application_fee=None,
            application_fee_amount=None,
            on_behalf_of=None,
            application=None,
            balance_transaction=None,
            invoice=None,
            review=None,
            source_transfer=None,
            failure_code=None,
            failure_message=None,
        )
        charge["metadata"] = dict(intent["metadata"])
        intent["latest_charge"] = charge["id"]
        self._charge_settled(charge)
        self._destination_charge(
            intent, charge, self._destination_params(intent_data, "payment_intent_data", total)
        )
        session.update(url=None, status="complete", payment_status="paid")
        session["payment_intent"] = intent["id"]
        session["amount_total"] = session["amount_subtotal"] = total
        self.emit("charge.succeeded", charge)
        self.emit("payment_intent.succeeded", intent)
        self.emit("checkout.session.completed", self._public(session))
        return intent

    # -- invoice items ---------------------------------------------------------------------

    def _invoice_item_create(self, request: Any, params: Object, match: re.Match[str]) -> Any:
        from tests.fakes.stripe_api import StripeError, _int

        for name in ("customer", "currency", "amount"):
            if not params.get(name):
                raise StripeError(
                    400, f"Missing required param: {name}.", code="parameter_missing", param=name
                )
        self.get(params["customer"], "customer")
        now = self.now()
        item = self._new(
            "invoiceitem",
            "ii",
            customer=params["customer"],
            amount=_int(params["amount"], "amount"),
            currency=params["currency"].lower(),
            description=params.get("description"),
            invoice=None,
            subscription=None,
            period={"start": now, "end": now},
            date=now,
            discountable=True,
            discounts=[],
            proration=False,
            quantity=1,
            test_clock=None,
        )
        self._apply_metadata(item, params)
        self.emit("invoiceitem.created", item)
        return 200, copy.deepcopy(item)

    def _invoice_lines(self, request: Any, params: Object, match: re.Match[str]) -> Any:
        """An invoice's lines, paginated (`limit`, `starting_after`) as Stripe lists them."""
        from tests.fakes.stripe_api import _int

        lines = self.get(match["id"], "invoice")["lines"]["data"]
        after = params.get("starting_after")
        if after is not None:
            ids = [line["id"] for line in lines]
            lines = lines[ids.index(after) + 1 :] if after in ids else []
        limit = _int(params.get("limit", 10), "limit")
        return 200, {
            "object": "list",
            "data": copy.deepcopy(lines[:limit]),
            "has_more": len(lines) > limit,
            "url": request.path,
        }

    def _pending_item_lines(self, invoice: Object, template: Object) -> list[Object]:
        """The customer's pending invoice items as lines of `invoice` (now theirs)."""
        lines = []
        for item in list(self.objects.values()):
            if (
                item["object"] != "invoiceitem"
                or item["customer"] != invoice["customer"]
                or item["invoice"] is not None
            ):
                continue
            item["invoice"] = invoice["id"]
            line = copy.deepcopy(template)
            line.update(
                id=self.new_id("il"),
                invoice=invoice["id"],
                amount=item["amount"],
                currency=item["currency"],
                quantity=1,
                subscription=None,
                metadata=dict(item["metadata"]),
                period=dict(item["period"]),
                description=item["description"],
            )
            line["pricing"] = {
                "type": "price_details",
                "price_details": None,
                "unit_amount_decimal": str(item["amount"]),
            }
            line["parent"] = {
                "type": "invoice_item_details",
                "invoice_item_details": {
                    "invoice_item": item["id"],
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": item["subscription"],
                },
                "subscription_item_details": None,
            }
            lines.append(line)
        return lines

    # -- standalone invoices and invoice payments -------------------------------------------

    def _invoice_create(self, request: Any, params: Object, match: re.Match[str]) -> Any:
        """A draft invoice outside any subscription (`invoice.created`): with
        `pending_invoice_items_behavior=include` the customer's pending items are its lines
        (Stripe's default is `exclude`: an empty invoice)."""
        from tests.fakes.stripe_api import StripeError, _bool

        if not params.get("customer"):
            raise StripeError(
                400, "Missing required param: customer.", code="parameter_missing", param="customer"
            )
        behavior = params.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("include", "exclude"):
            raise StripeError(
                400,
                f"Invalid pending_invoice_items_behavior: {behavior}.",
                param="pending_invoice_items_behavior",
            )
        with self._state:
            self.get(params["customer"], "customer")
            now = self.now()
            invoice = self._new(
                "invoice",
                "in",
                customer=params["customer"],
                subscription=None,
                parent=None,
                billing_reason="manual",
                collection_method=params.get("collection_method", "charge_automatically"),
                auto_advance=_bool(params.get("auto_advance", False)),
                automatically_finalizes_at=None,
                currency=str(params.get("currency") or "usd").lower(),
                description=params.get("description"),
                period_start=now,
                period_end=now,
                status="draft",
                test_clock=None,
                discounts=[],
                hosted_invoice_url=None,
                invoice_pdf=None,
                number=None,
                attempted=False,
                attempt_count=0,
                next_payment_attempt=None,
                effective_at=None,
            )
            invoice["status_transitions"] = {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            }
            self._apply_metadata(invoice, params)
            template = invoice["lines"]["data"][0]
            lines = self._pending_item_lines(invoice, template) if behavior == "include" else []
            self._set_lines(invoice, lines)
            self.emit("invoice.created", invoice)
        return 200, self._public(invoice)

    def _invoice_finalize(self, request: Any, params: Object, match: re.Match[str]) -> Any:
        """draft → open (`invoice.finalized`); a $0 invoice is paid at once (`invoice.paid`),
        as Stripe does. Stripe then collects an open one automatically (`collect_invoice`)."""
        from tests.fakes.stripe_api import StripeError

        with self._state:
            invoice = self.get(match["id"], "invoice")
            if invoice["status"] != "draft":
                raise StripeError(
                    400,
                    "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                    code="invoice_not_editable",
                )
            self._settle(invoice, paid=invoice["amount_due"] == 0)
            invoice.update(attempted=False, attempt_count=0)
            self.emit("invoice.finalized", invoice)
            if invoice["status"] == "paid":
                self.emit("invoice.paid", invoice)
        return 200, self._public(invoice)

    def collect_invoice(self, invoice_id: str, *, fail: bool = False) -> Object:
        """Stripe's automatic collection of an open invoice (`auto_advance`, about an hour
        after finalizing): paid with the customer's default card (`invoice.paid`), or with
        `fail` declined (`invoice.payment_failed`, left open for the next retry)."""
        from tests.fakes.stripe_api import StripeError

        with self._state:
            invoice = self.get(invoice_id, "invoice")
            if invoice["status"] != "open":
                raise StripeError(400, f"Invoice {invoice_id} is {invoice['status']}, not open.")
            attempts, number = invoice["attempt_count"], invoice["number"]
            if fail:
                invoice.update(attempted=True, next_payment_attempt=self.now() + 3 * 86400)
                invoice["attempt_count"] = attempts + 1
                self.emit("invoice.payment_failed", invoice)
            else:
                self._settle(invoice, paid=True)
                invoice.update(attempt_count=attempts + 1, number=number, next_payment_attempt=None)
                self.emit("invoice.paid", invoice)
        if not self.hold_events:
            self.flush_events()
        return self._public(invoice)

    def _invoice_payment_record(self, invoice: Object) -> None:
        """The PaymentIntent and Charge that paid `invoice` (its customer's card), and the
        `invoice_payment` linking them. Called under the state lock when it is paid."""
        amount = invoice["amount_due"]
        if amount <= 0:
            return
        customer = self.objects.get(invoice["customer"]) or {}
        method = (customer.get("invoice_settings") or {}).get("default_payment_method")
        intent, _charge = self._succeeded_payment(
            amount, invoice["currency"], invoice["customer"], payment_method=method
        )
        self._new(
            "invoice_payment",
            "inpay",
            invoice=invoice["id"],
            amount_paid=amount,
            amount_requested=amount,
            currency=invoice["currency"],
            is_default=True,
            status="paid",
            payment={"type": "payment_intent", "payment_intent": intent["id"]},
            status_transitions={"canceled_at": None, "paid_at": self.now()},
        )
