from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

if TYPE_CHECKING:
    from tenants.models import Workspace
    from tenants.permissions import Access


class AppRequest(HttpRequest):
    """What our middleware adds to a request, for type checking (never instantiated)."""

    htmx: HtmxDetails
    request_id: str
    workspace: Workspace | None
    access: Access | None


def int_or_none(value: str | None) -> int | None:
    """A query parameter as an integer; None when missing or not a number."""
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
