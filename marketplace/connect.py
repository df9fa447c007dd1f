"""Creators' payout accounts: a publisher's Stripe Connect (Express) account, onboarded on
Stripe's hosted pages through account links.

The platform charges buyers and transfers to creators (separate charges and transfers), so an
account requests only Stripe's `transfers` capability, and "onboarded" is details submitted,
payouts enabled and `transfers` active (`charges_enabled` needs `card_payments`, which a
creator's account never has). A creator outside the platform's country
(`settings.STRIPE_PLATFORM_COUNTRY`) gets an account under Stripe's recipient service agreement:
cross-border payouts only work with those (decision 135).

Invariants: a publisher has at most one connected account (created with an idempotency key
derived from the publisher, and `CreatorAccount.publisher` is unique), and our copy of its status
is only ever written from what Stripe answers when we read the account, never from a webhook's
copy, so an event delivered late, twice or out of order leaves the current state. A paid version
is submitted only for an onboarded publisher (`marketplace.services.listing_publish`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from djstripe.event_handlers import djstripe_receiver
from djstripe.models import Event
from stripe.params import AccountCreateParams

from billing.stripe_client import stripe_client, stripe_errors, stripe_mode
from marketplace.models import BankPayout, CreatorAccount, Publisher
from marketplace.services import publisher_get_or_create
from tenants import audit
from tenants.permissions import Access, Perm

# Countries offered for a new payouts account (Stripe Express, paying out in USD for now).
COUNTRIES: list[tuple[str, str]] = [
    ("US", "United States"),
    ("CA", "Canada"),
    ("GB", "United Kingdom"),
    ("IE", "Ireland"),
    ("DE", "Germany"),
    ("FR", "France"),
    ("NL", "Netherlands"),
    ("ES", "Spain"),
    ("IT", "Italy"),
    ("AU", "Australia"),
]
DEFAULT_COUNTRY = "US"

# Stripe's requirement field names, as a creator would say them (the first matching prefix).
_REQUIREMENT_WORDS: tuple[tuple[str, str], ...] = (
    ("external_account", "a bank account to receive payouts"),
    ("tos_acceptance", "acceptance of Stripe's services agreement"),
    ("business_profile.url", "your website or a link to your work"),
    ("business_profile.product_description", "a description of what you sell"),
    ("business_profile.support_phone", "a support phone number"),
    ("business_profile.mcc", "your business category"),
    ("business_type", "whether you sell as an individual or a company"),
    ("individual.verification", "an identity document"),
    ("individual.id_number", "your tax or ID number"),
    ("individual.ssn_last_4", "the last 4 digits of your SSN"),
    ("individual.dob", "your date of birth"),
    ("individual.address", "your address"),
    ("individual", "your personal details"),
    ("company", "your company's details"),
    ("representative", "your company representative's details"),
    ("owners", "your company's owners"),
    ("directors", "your company's directors"),
    ("executives", "your company's executives"),
)

_DISABLED_WORDS: dict[str, str] = {
    "requirements.past_due": "Stripe needs the details listed below before it can pay you.",
    "requirements.pending_verification": "Stripe is verifying the details you gave.",
    "under_review": "Stripe is reviewing the account.",
    "listed": "Stripe is reviewing the account.",
    "rejected.fraud": "Stripe rejected the account. Contact the platform's support.",
    "rejected.terms_of_service": "Stripe rejected the account. Contact the platform's support.",
    "rejected.listed": "Stripe rejected the account. Contact the platform's support.",
    "rejected.other": "Stripe rejected the account. Contact the platform's support.",
    "platform_paused": "The platform paused this account. Contact the platform's support.",
}


def requirement_words(names: list[str]) -> list[str]:
    """Stripe's `requirements.currently_due` in plain words, each once, in order."""
    words: list[str] = []
    for name in names:
        phrase = next(
            (text for prefix, text in _REQUIREMENT_WORDS if name.startswith(prefix)),
            name.replace(".", " ").replace("_", " "),
        )
        if phrase not in words:
            words.append(phrase)
    return words


def disabled_words(reason: str) -> str:
    if not reason:
        return ""
    return _DISABLED_WORDS.get(reason, f"Stripe disabled the account ({reason}).")


@dataclass(frozen=True)
class PayoutStatus:
    """What the Publish page says about a publisher's payouts account."""

    state: str  # "off" (billing off), "none", "onboarded", "due", "disabled", "pending"
    account: CreatorAccount | None = None
    requirements: list[str] = field(default_factory=list)
    disabled: str = ""

    @property
    def recipient(self) -> bool:
        """The account is payouts-only (Stripe's recipient agreement: outside our country)."""
        account = self.account
        return (
            account is not None
            and bool(account.country)
            and (service_agreement(account.country) == "recipient")
        )

    @property
    def platform_country(self) -> str:
        """The platform's country, as the setup form names it ("United States")."""
        return country_name(platform_country())


def platform_country() -> str:
    return str(getattr(settings, "STRIPE_PLATFORM_COUNTRY", "") or DEFAULT_COUNTRY).upper()


def country_name(code: str) -> str:
    return dict(COUNTRIES).get(code, code)


def service_agreement(country: str) -> str:
    """Stripe's service agreement for a creator's account in `country`: "recipient" outside
    the platform's country (cross-border payouts need it; such an account can only receive
    transfers, which is all a creator's needs), else "full"."""
    return "full" if country.upper() == platform_country() else "recipient"


def payout_status(account: CreatorAccount | None) -> PayoutStatus:
    if account is None:
        return PayoutStatus("off" if stripe_mode() == "off" else "none")
    requirements = requirement_words(list(account.requirements_due))
    if account.onboarded:
        return PayoutStatus("onboarded", account, requirements)
    if account.disabled_reason and not account.disabled_reason.startswith("requirements."):
        return PayoutStatus(
            "disabled", account, requirements, disabled_words(account.disabled_reason)
        )
    if requirements or not account.details_submitted:
        return PayoutStatus("due", account, requirements, disabled_words(account.disabled_reason))
    return PayoutStatus("pending", account, requirements, disabled_words(account.disabled_reason))


def creator_account_of(*, access: Access) -> CreatorAccount | None:
    """The workspace's payouts account, if it started one (members may read its status)."""
    return (
        CreatorAccount.objects.select_related("publisher")
        .filter(publisher__workspace=access.workspace)
        .first()
    )


def _apply(account: CreatorAccount, remote: Any) -> None:
    requirements = remote.get("requirements") or {}
    account.country = remote.get("country") or ""
    account.default_currency = remote.get("default_currency") or ""
    account.details_submitted = bool(remote.get("details_submitted"))
    account.charges_enabled = bool(remote.get("charges_enabled"))
    account.payouts_enabled = bool(remote.get("payouts_enabled"))
    # Stripe's capability statuses by name ("active", "inactive", "pending"); the Express
    # account's `transfers` is what the platform's transfers need.
    account.transfers_active = (remote.get("capabilities") or {}).get("transfers") == "active"
    account.requirements_due = list(requirements.get("currently_due") or [])
    account.disabled_reason = requirements.get("disabled_reason") or ""
    account.synced_at = timezone.now()
    account.save(
        update_fields=[
            "country",
            "default_currency",
            "details_submitted",
            "charges_enabled",
            "payouts_enabled",
            "transfers_active",
            "requirements_due",
            "disabled_reason",
            "synced_at",
        ]
    )


def creator_account_create(*, publisher: Publisher, country: str) -> tuple[CreatorAccount, bool]:
    """The publisher's Express account, created at Stripe the first time (one idempotency key
    per publisher: a retry or a second click gets the same account). It requests only the
    `transfers` capability, under the recipient service agreement when `country` is not the
    platform's (`service_agreement`). (account, created)."""
    existing = CreatorAccount.objects.filter(publisher=publisher).first()
    if existing is not None:
        return existing, False
    params: AccountCreateParams = {
        "type": "express",
        "country": country,
        "capabilities": {"transfers": {"requested": True}},
        "business_profile": {"name": publisher.display_name},
        "metadata": {"publisher_id": str(publisher.pk)},
    }
    if service_agreement(country) == "recipient":
        params["tos_acceptance"] = {"service_agreement": "recipient"}
    client = stripe_client()
    with stripe_errors("create your payouts account"):
        remote = client.v1.accounts.create(
            params=params,
            options={"idempotency_key": f"creator-account-{publisher.pk}"},
        )
    with transaction.atomic():
        account, created = CreatorAccount.objects.get_or_create(
            publisher=publisher, defaults={"stripe_account_id": remote.id}
        )
        if created:
            _apply(account, remote.to_dict())
    return account, created


def onboarding_link(*, access: Access, refresh_url: str, return_url: str) -> str:
    """A fresh Stripe-hosted onboarding link for the workspace's payouts account (made by the
    `payouts_start` service); Stripe sends the creator to `refresh_url` when the link expired
    or was used, and to `return_url` when they leave onboarding (done or not)."""
    access.require(Perm.BILLING_MANAGE)
    account = creator_account_of(access=access)
    if account is None:
        return payouts_start(access=access, refresh_url=refresh_url, return_url=return_url)
    client = stripe_client()
    with stripe_errors("open the payouts setup"):
        link = client.v1.account_links.create(
            params={
                "account": account.stripe_account_id,
                "type": "account_onboarding",
                "refresh_url": refresh_url,
                "return_url": return_url,
            }
        )
    return str(link.url)


def payouts_start(
    *, access: Access, refresh_url: str, return_url: str, country: str = DEFAULT_COUNTRY
) -> str:
    """Set up payouts for the workspace's publisher: create its Express account the first time
    (once, whatever the retries), then answer the onboarding link to send the creator to."""
    access.require(Perm.BILLING_MANAGE)
    if country not in dict(COUNTRIES):
        country = DEFAULT_COUNTRY
    if creator_account_of(access=access) is None:
        publisher = publisher_get_or_create(access=access)
        account, created = creator_account_create(publisher=publisher, country=country)
        if created:
            audit.record_for(
                access,
                action=audit.Action.PAYOUTS_SETUP_STARTED,
                target=account,
                metadata={"stripe_account": account.stripe_account_id, "country": country},
            )
    return onboarding_link(access=access, refresh_url=refresh_url, return_url=return_url)


def creator_account_sync(*, stripe_account_id: str) -> CreatorAccount | None:
    """Re-read a connected account from Stripe and store its status; None when it is not one of
    our creators'. Idempotent, and safe out of order: what is stored is what Stripe says now."""
    with transaction.atomic():
        account = (
            CreatorAccount.objects.select_for_update()
            .filter(stripe_account_id=stripe_account_id)
            .first()
        )
        if account is None:
            return None
        client = stripe_client()
        with stripe_errors("read your payouts account"):
            remote = client.v1.accounts.retrieve(stripe_account_id)
        _apply(account, remote.to_dict())
    return account


def creator_account_refresh(*, access: Access) -> CreatorAccount | None:
    """The workspace's payouts account, re-read from Stripe (back from onboarding)."""
    account = creator_account_of(access=access)
    if account is None:
        return None
    return creator_account_sync(stripe_account_id=account.stripe_account_id)


@djstripe_receiver("account.updated")  # type: ignore[untyped-decorator]
def on_account_updated(sender: Any, event: Event, **kwargs: Any) -> None:
    obj = event.data.get("object") or {}
    if obj.get("object") == "account" and obj.get("id"):
        creator_account_sync(stripe_account_id=str(obj["id"]))


# What a creator does when Stripe could not pay their balance out to their bank, by Stripe's
# failure code (https://docs.stripe.com/api/payouts/failures); any other: the generic one.
# Where an Express account's owner signs in to change their bank details.
EXPRESS_LOGIN_URL = "https://connect.stripe.com/express_login"
BANK_FIX = (
    "Update your bank account in your Stripe Express dashboard (sign in with this payouts "
    "account's email). The money is safe in your Stripe balance: Stripe pays it out again once "
    "the bank account works."
)
# What staff do (the admin's Bank payouts): nothing to re-send on our side.
BANK_FIX_STAFF = (
    "Our transfer arrived: the money is in the creator's Stripe balance. Ask the creator to "
    "update their bank account (Express dashboard); Stripe retries the payout itself. Check the "
    "connected account in the Stripe dashboard if it keeps failing. Do not re-send a transfer."
)
BANK_FAILURE_WORDS: dict[str, str] = {
    "account_closed": "Your bank account has been closed.",
    "account_frozen": "Your bank account is frozen.",
    "no_account": "Your bank could not find that account number.",
    "invalid_account_number": "The bank account number is not valid.",
    "bank_account_restricted": "Your bank account does not accept this kind of payment.",
    "could_not_process": "Your bank could not process the payout.",
    "invalid_currency": "Your bank account cannot receive this currency.",
}


def bank_failure_words(payout: BankPayout) -> str:
    """Why a bank payout failed and what the creator does, in plain words."""
    why = BANK_FAILURE_WORDS.get(
        payout.failure_code, payout.failure_message or "Your bank refused the payout."
    )
    return f"{why} {BANK_FIX}"


def bank_payout_sync(*, account_id: str, payout: Mapping[str, Any]) -> BankPayout | None:
    """Store a connected account's bank payout as Stripe has it now (pass Stripe's current
    copy, not the event's: a payout can be paid, then fail); None when the account is not one
    of our creators'. Idempotent and order-free. Its failing is audited once."""
    with transaction.atomic():
        creator = (
            CreatorAccount.objects.select_related("publisher__workspace")
            .filter(stripe_account_id=account_id)
            .first()
        )
        if creator is None:
            return None
        row = (
            BankPayout.objects.select_for_update()
            .filter(stripe_payout_id=str(payout["id"]))
            .first()
        )
        was_failed = row is not None and row.status == BankPayout.Status.FAILED
        if row is None:
            row = BankPayout(creator=creator, stripe_payout_id=str(payout["id"]))
        row.amount_cents = int(payout.get("amount") or 0)
        row.currency = str(payout.get("currency") or "usd")
        row.status = str(payout.get("status") or BankPayout.Status.PENDING)
        row.failure_code = str(payout.get("failure_code") or "")
        row.failure_message = str(payout.get("failure_message") or "")[:500]
        row.stripe_created_at = datetime.fromtimestamp(int(payout.get("created") or 0), UTC)
        row.save()
        if row.status == BankPayout.Status.FAILED and not was_failed:
            audit.record(
                action=audit.Action.BANK_PAYOUT_FAILED,
                workspace=creator.publisher.workspace,
                target=row,
                metadata={
                    "payout": row.stripe_payout_id,
                    "amount_cents": row.amount_cents,
                    "currency": row.currency,
                    "failure_code": row.failure_code,
                },
            )
    return row


def bank_payout_problem(*, creator: CreatorAccount) -> BankPayout | None:
    """The creator's latest bank payout when it failed (nothing paid since): what the
    Earnings page and staff show, with what to do."""
    latest = (
        BankPayout.objects.filter(creator=creator)
        .exclude(status__in=[BankPayout.Status.PENDING, BankPayout.Status.IN_TRANSIT])
        .first()
    )
    return latest if latest is not None and latest.status == BankPayout.Status.FAILED else None
