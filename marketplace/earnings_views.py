"""The publisher's Earnings page (/w/<slug>/marketplace/earnings/, owners and admins): pending,
available, frozen and paid totals per currency earned in, a failed bank payout with what to
do, net earnings by day (a server-drawn SVG chart), by listing,
the payouts with their transfers, and the CSV statement of every ledger row in a date range."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from core.exceptions import NotFound
from marketplace import earnings, selectors
from marketplace.connect import EXPRESS_LOGIN_URL, bank_failure_words, bank_payout_problem
from marketplace.models import CreatorAccount, LedgerEntry
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Access, Perm

CHART_DAYS = 30
CHART_HEIGHT = 120
BAR_WIDTH = 10  # viewBox units; the SVG stretches to the card's width


def _statement_range(request: AppRequest) -> tuple[date | None, date | None, dict[str, str]]:
    """(from, to, errors by field) of the statement form: each date optional (YYYY-MM-DD),
    From on or before To."""
    days: dict[str, date | None] = {}
    errors: dict[str, str] = {}
    for name in ("from", "to"):
        raw = request.GET.get(name, "").strip()
        days[name] = None
        if not raw:
            continue
        try:
            days[name] = date.fromisoformat(raw)
        except ValueError:
            errors[name] = f"{name.title()}: a date like 2026-03-01 (got {raw!r})."
    start, end = days["from"], days["to"]
    if start and end and start > end:
        errors["from"] = f"From: on or before To ({end.isoformat()})."
    return start, end, errors


def _chart(days: list[tuple[date, int]]) -> dict[str, Any]:
    """Bars for net earnings per day: above the baseline for earnings, below for days when
    refunds took more than sales brought."""
    highest = max([0, *(value for _, value in days)])
    lowest = min([0, *(value for _, value in days)])
    span = (highest - lowest) or 1
    baseline = CHART_HEIGHT * highest / span
    bars = []
    for n, (day, value) in enumerate(days):
        height = CHART_HEIGHT * abs(value) / span
        bars.append(
            {
                "x": n * BAR_WIDTH + 1,
                "y": baseline - height if value >= 0 else baseline,
                "height": max(height, 0.5 if value else 0),
                "day": day,
                "cents": value,
                "negative": value < 0,
            }
        )
    return {
        "bars": bars,
        "width": len(days) * BAR_WIDTH,
        "height": CHART_HEIGHT,
        "baseline": baseline,
        "bar_width": BAR_WIDTH - 2,
        "total": sum(value for _, value in days),
        "best": max(days, key=lambda item: item[1]) if days else None,
    }


@require_GET
def earnings_page(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.BILLING_VIEW)
    return _earnings_page(request, access)


def _earnings_page(
    request: AppRequest,
    access: Access,
    *,
    statement_errors: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The page; with `statement_errors`, the statement form again with what the creator typed
    and each date's problem beside it (400)."""
    publisher = earnings.creator_publisher(access=access)
    today = timezone.now().date()
    context: dict[str, Any] = {
        "publisher": publisher,
        "today": today,
        "hold_days": settings.MARKETPLACE_EARNINGS_HOLD_DAYS,
        "statement_errors": statement_errors or {},
        "statement_from": request.GET.get("from", "") if statement_errors else "",
        "statement_to": (request.GET.get("to", "") if statement_errors else today.isoformat()),
    }
    if publisher is not None:
        start = today - timedelta(days=CHART_DAYS - 1)
        by_day = earnings.earnings_by_day(publisher_id=publisher.pk, start=start, end=today)
        balances = selectors.creator_balances(publisher_id=publisher.pk)
        creator = CreatorAccount.objects.filter(publisher=publisher).first()
        bank_problem = bank_payout_problem(creator=creator) if creator else None
        # One chart per currency with earnings in the window (amounts in two currencies are
        # never added), in the balances' order; a quiet month shows the main currency's zeros.
        currencies = [row.currency for row in balances if row.currency in by_day] or [
            balances[0].currency if balances else "usd"
        ]
        empty = [(start + timedelta(days=n), 0) for n in range(CHART_DAYS)]
        order = {row.currency: n for n, row in enumerate(balances)}
        context.update(
            balances=balances,
            bank_problem=bank_problem,
            bank_problem_words=bank_failure_words(bank_problem) if bank_problem else "",
            express_login_url=EXPRESS_LOGIN_URL,
            listings=sorted(  # stable: biggest first within each currency
                earnings.earnings_by_listing(publisher_id=publisher.pk),
                key=lambda row: order.get(row.currency, len(order)),
            ),
            payouts=list(earnings.creator_payouts(publisher_id=publisher.pk)[:50]),
            charts=[{"currency": code, **_chart(by_day.get(code, empty))} for code in currencies],
            chart_start=start,
            has_entries=LedgerEntry.objects.filter(publisher=publisher).exists(),
        )
    return render(request, "marketplace/earnings.html", context, status=status)


STATEMENT_COLUMNS = [
    "date",
    "kind",
    "balance",
    "listing",
    "sale",
    "gross",
    "platform_fee",
    "stripe_fee",
    "amount",
    "currency",
    "stripe_id",
]


def _decimal(cents: int | None) -> str:
    if cents is None:
        return ""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


@require_GET
def earnings_statement(request: AppRequest) -> HttpResponse:
    """Every ledger row from `from` to `to` (YYYY-MM-DD, both optional and included)."""
    access = page_access(request, Perm.BILLING_VIEW)
    publisher = earnings.creator_publisher(access=access)
    if publisher is None:
        raise NotFound("This workspace has not published anything: there is no statement.")
    start, end, problems = _statement_range(request)
    if problems:  # the Earnings page again, the problem beside the date
        return _earnings_page(request, access, statement_errors=problems, status=400)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = f"earnings-{publisher.slug}-{start or 'start'}-{end or 'today'}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow(STATEMENT_COLUMNS)
    for entry in earnings.statement_entries(publisher_id=publisher.pk, start=start, end=end):
        writer.writerow(
            [
                entry.occurred_at.isoformat(),
                entry.get_kind_display(),
                entry.get_bucket_display(),
                entry.listing.title if entry.listing else "",
                entry.sale_ref,
                _decimal(entry.gross_cents),
                _decimal(entry.fee_cents),
                _decimal(entry.stripe_fee_cents),
                _decimal(entry.amount_cents),
                entry.currency.upper(),
                entry.stripe_id,
            ]
        )
    return response
