"""allauth's adapters: emails signed with the product's name, not the request's host; two-factor
secrets encrypted at rest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from allauth.account.adapter import DefaultAccountAdapter
from allauth.mfa.adapter import DefaultMFAAdapter
from django.conf import settings

from core import crypto


@dataclass(frozen=True)
class ProductSite:
    """What allauth's email templates read as `current_site` (`name`, `domain`). Without
    django.contrib.sites allauth would use the request's host ("localhost:8000") for both."""

    name: str
    domain: str


def product_site() -> ProductSite:
    return ProductSite(name=settings.PRODUCT_NAME, domain=urlsplit(settings.SITE_URL).netloc)


class AccountAdapter(DefaultAccountAdapter):
    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        super().send_mail(template_prefix, email, {"current_site": product_site(), **context})


class MfaAdapter(DefaultMFAAdapter):
    """allauth's two-factor adapter, with TOTP secrets and recovery-code seeds encrypted at rest
    like the project's other secrets (core/crypto.py); allauth's default stores them plain."""

    def encrypt(self, text: str) -> str:
        return crypto.encrypt(text)

    def decrypt(self, encrypted_text: str) -> str:
        return crypto.decrypt(encrypted_text)
