"""The inbox, the nav badge's partial and the preferences page. Every view acts on the signed-in
person's own notifications only: another person's id is not found (404)."""

from __future__ import annotations

from typing import cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from accounts.models import User
from core.exceptions import ApplicationError
from core.forms import form_add_application_error
from notifications import selectors, services
from notifications.context_processors import Badge
from notifications.forms import PreferencesForm

PER_PAGE = 30


class NotificationRequest(HttpRequest):
    """For type checking: what django-htmx adds."""

    htmx: HtmxDetails


def _user(request: HttpRequest) -> User:
    return cast(User, request.user)


def _safe_path(url: str) -> str | None:
    """Only a path on this site (stored by our own services; checked again: no open redirect)."""
    if url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return None


@login_required
@require_GET
def inbox(request: NotificationRequest) -> HttpResponse:
    user = _user(request)
    unread_only = request.GET.get("show") == "unread"
    rows = selectors.inbox(user_id=user.pk, unread_only=unread_only)
    page = Paginator(rows, PER_PAGE).get_page(request.GET.get("page"))
    badge = Badge(selectors.unread_count(user_id=user.pk))
    return render(
        request,
        "notifications/inbox.html",
        {"page": page, "unread_only": unread_only, "notifications_badge": badge},
    )


@login_required
@require_GET
def badge(request: NotificationRequest) -> HttpResponse:
    """The nav badge alone, for the page's polling (HTMX, every 30 s)."""
    badge = Badge(selectors.unread_count(user_id=_user(request).pk))
    return render(request, "notifications/_badge.html", {"notifications_badge": badge})


@login_required
@require_GET
def open_notification(request: NotificationRequest, notification_id: int) -> HttpResponse:
    """Follow a notification's link, marking it read on the way."""
    notification = services.notification_mark_read(
        user=_user(request), notification_id=notification_id
    )
    return redirect(_safe_path(notification.url) or "notifications")


@login_required
@require_POST
def mark_read(request: NotificationRequest, notification_id: int) -> HttpResponse:
    notification = services.notification_mark_read(
        user=_user(request), notification_id=notification_id
    )
    if request.htmx:
        return render(
            request,
            "notifications/_item.html",
            {
                "n": notification,
                "oob_badge": True,
                "notifications_badge": Badge(selectors.unread_count(user_id=notification.user_id)),
            },
        )
    return redirect("notifications")


@login_required
@require_POST
def mark_all_read(request: NotificationRequest) -> HttpResponse:
    changed = services.notifications_mark_all_read(user=_user(request))
    messages.success(
        request, f"Marked {changed} notification{'s' if changed != 1 else ''} as read."
    )
    return redirect("notifications")


@login_required
@require_http_methods(["GET", "POST"])
def preferences(request: NotificationRequest) -> HttpResponse:
    user = _user(request)
    channels = selectors.preferences_for_user(user_id=user.pk)
    form = PreferencesForm(request.POST or None, channels=channels)
    if request.method == "POST" and form.is_valid():
        try:
            services.preferences_set(user=user, choices=form.choices())
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, "Notification preferences saved.")
            return redirect("notification_preferences")
    rows = [
        (
            row,
            form[f"{row.kind}-in_app"],
            form[f"{row.kind}-email"] if row.email_choice else None,
        )
        for row in channels
    ]
    return render(request, "notifications/preferences.html", {"form": form, "rows": rows})
