from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

if TYPE_CHECKING:
    from tenants.models import Workspace
    from tenants.permissions import Access


class AppRequest(HttpRequest):
    """What our middleware adds to a request, for type checking (never instantiated): the
    request id (core), htmx details, and the workspace and the caller's access (tenants)."""

    htmx: HtmxDetails
    request_id: str
    workspace: Workspace | None
    access: Access | None
