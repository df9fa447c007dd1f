"""The demo's plans: Free (the default, created by migration 0003) plus Pro and Team.
Idempotent: a plan that exists (by key) is left as staff edited it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing.models import Plan

DEMO_PLANS: list[dict[str, Any]] = [
    {
        "key": "pro",
        "name": "Pro",
        "description": "For a team shipping agents: larger allowances, overage billed by use.",
        "monthly_price_cents": 2900,
        "yearly_price_cents": 29000,
        "included_ai_spend_usd": Decimal("20.00"),
        "runs_per_month": 5000,
        "seats": 10,
        "workflows": None,
        "knowledge_storage_mb": 1024,
        "api_requests_per_minute": 600,
        "allows_overage": True,
        "trial_days": 14,
        "sort_order": 1,
    },
    {
        "key": "team",
        "name": "Team",
        "description": "For several teams: the most included, SSO and audit export.",
        "monthly_price_cents": 9900,
        "yearly_price_cents": 99000,
        "included_ai_spend_usd": Decimal("100.00"),
        "runs_per_month": 50000,
        "seats": 50,
        "workflows": None,
        "knowledge_storage_mb": 10240,
        "api_requests_per_minute": 3000,
        "allows_overage": True,
        "features": ["sso", "audit_export"],
        "sort_order": 2,
    },
]


def seed_demo_plans() -> list[Plan]:
    plans = []
    for spec in DEMO_PLANS:
        plan, _ = Plan.objects.get_or_create(key=spec["key"], defaults=spec)
        plans.append(plan)
    return plans
