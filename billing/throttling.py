"""Each workspace's API requests per minute, capped at its plan's `api_requests_per_minute`
(issue 14). On only while plan quotas are (`BILLING_QUOTAS`); a plan without a figure is
unlimited. It adds to the per-key and per-user throttles (tenants/api/throttling.py), which
protect the platform; this one is what the workspace pays for.

Counting: one counter per workspace and clock minute in Redis (the default cache), raised with
`INCR`, which is atomic across workers. Whatever the interleaving, the request that takes the
counter past the limit sees the larger figure, so concurrent requests at the limit cannot get
past it: at most `limit` requests pass in a clock minute. The window is fixed, not sliding, so
up to twice the limit can pass in the 60 seconds around a minute boundary (the end of one
minute and the start of the next); the refused request is told to retry when its minute ends.

The plan's rate is cached for `PLAN_RATE_SECONDS` per workspace, so a request costs two or
three Redis round trips and no database query, and a plan change applies within that time.
A browser session names its workspace with the X-Workspace header; the membership behind it
is cached as long, so an outsider naming another workspace never spends its budget.
"""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from billing.models import WorkspacePlan
from billing.plans import plan_start
from tenants.models import ApiKey, Membership

if TYPE_CHECKING:
    from rest_framework.views import APIView

PLAN_RATE_SECONDS = 10
WINDOW_SECONDS = 60
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,40}")
_MISSING = object()


class PlanRateLimited(APIException):
    """429 in the standard envelope (code `plan_rate_limited`); DRF's handler adds
    `Retry-After` from `wait`."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "plan_rate_limited"

    def __init__(self, message: str, *, wait: int) -> None:
        super().__init__(message)
        self.wait = wait


def _workspace_of(request: Request) -> int | None:
    """The workspace a call spends: an API key's own, or for a session the one its
    X-Workspace header names when the user is a member (None otherwise)."""
    # Imported here: the throttle is loaded with DRF's settings, before its views module exists.
    from tenants.api.base import WORKSPACE_HEADER

    if isinstance(request.auth, ApiKey):
        return int(request.auth.workspace_id)
    user = request.user
    slug = request.headers.get(WORKSPACE_HEADER, "").strip()
    if not (user and user.is_authenticated and _SLUG.fullmatch(slug)):
        return None
    key = f"billing:api-rate:member:{user.pk}:{slug}"
    found: Any = cache.get(key, _MISSING)
    if found is _MISSING:
        found = (
            Membership.objects.filter(user_id=user.pk, workspace__slug=slug)
            .values_list("workspace_id", flat=True)
            .first()
        )
        cache.set(key, found, PLAN_RATE_SECONDS)
    return int(found) if found is not None else None


def plan_rate(workspace_id: int) -> tuple[int | None, str]:
    """(requests per minute or None for unlimited, the plan's name), cached briefly."""
    key = f"billing:api-rate:plan:{workspace_id}"
    found: Any = cache.get(key)
    if found is None:
        row = (
            WorkspacePlan.objects.filter(workspace_id=workspace_id)
            .values_list("plan__api_requests_per_minute", "plan__name")
            .first()
        )
        if row is None:  # a workspace without a plan row gets one (the default plan)
            made = plan_start(workspace_id=workspace_id)
            row = (made.plan.api_requests_per_minute, made.plan.name)
        found = row
        cache.set(key, found, PLAN_RATE_SECONDS)
    limit, name = found
    return limit, str(name)


def _spend_one(key: str) -> int:
    """Add one to the minute's counter (created on first use, gone after the minute)."""
    try:
        return int(cache.incr(key))
    except ValueError:  # the minute's first request (or its counter just expired)
        cache.add(key, 0, WINDOW_SECONDS * 2)
        return int(cache.incr(key))


class PlanRateThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: APIView) -> bool:
        if not settings.BILLING_QUOTAS:
            return True
        workspace_id = _workspace_of(request)
        if workspace_id is None:
            return True
        limit, plan_name = plan_rate(workspace_id)
        if limit is None:
            return True
        now = time.time()
        minute = int(now // WINDOW_SECONDS)
        used = _spend_one(f"billing:api-rate:{workspace_id}:{minute}")
        if used <= limit:
            return True
        wait = math.ceil(WINDOW_SECONDS - now % WINDOW_SECONDS)  # when this minute ends
        raise PlanRateLimited(
            f"This workspace's {plan_name} plan allows {limit} API requests a minute, and this "
            f"minute's are used up. Try again in {wait} seconds, or ask an owner or admin to "
            "upgrade the plan on the Billing page for a higher rate.",
            wait=wait,
        )

    def wait(self) -> float | None:  # allow_request raises with its own wait
        return None
