"""allauth's adapter: its emails are signed with the product's name, not the request's host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings


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
