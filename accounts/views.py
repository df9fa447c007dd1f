"""The back-office sign-in goes through allauth's, so its rate limits (failed attempts per
address and per account) and its sign-in audit apply to staff too."""

from __future__ import annotations

from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


def admin_login(request: HttpRequest) -> HttpResponseRedirect:
    """Stands in for Django admin's own login view, which checks passwords without any limit.

    Never checks a password itself: anyone not signed in is sent to allauth's sign-in with
    `next` kept; a signed-in staff member goes on; anyone else is refused (sending them to the
    sign-in page would bounce straight back here)."""
    admin_index = reverse("admin:index")
    next_url = request.GET.get("next") or admin_index
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = admin_index
    user = request.user
    if not user.is_authenticated:
        return redirect(f"{reverse('account_login')}?{urlencode({'next': next_url})}")
    if user.is_active and user.is_staff:
        return redirect(next_url)
    raise PermissionDenied(
        f"You are signed in as {user}, which is not a staff account, so the back-office is "
        "closed to you."
    )
