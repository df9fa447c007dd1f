"""Budgets: a per-run cap (on the agent version) and a monthly workspace cap. Both are checked
*before* a provider call, against the most the call could cost (its input estimated from the
text, its output at `max_tokens`), so a call that could overrun is never paid for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from agents.gateway import config_cache, spend
from agents.gateway.tokens import estimate_text_tokens
from agents.models import WorkspaceBudget
from agents.providers.base import ChatRequest, Usage
from billing import quotas
from billing.pricing import usage_cost
from core.exceptions import ApplicationError, ValidationFailed
from notifications.kinds import Kind
from notifications.services import Event, notify_on_commit
from tenants.models import Workspace
from tenants.permissions import Access, Perm
from tenants.schemas import current_schema
from tenants.selectors import admin_ids

WARN_AT = Decimal("0.8")


class BudgetExceeded(ApplicationError):
    """A call refused before it was sent. `usage` and `cost_usd` are what the run or turn had
    already spent (earlier attempts and tool-loop turns), set on the way up, so it shows what
    it cost, like a GatewayError."""

    code = "budget_exceeded"
    status = 402
    usage: Usage = Usage()
    cost_usd: Decimal = Decimal(0)


def month_start() -> datetime:
    now = timezone.now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_spend() -> Decimal:
    """This month's model cost, from the ledger."""
    return spend.ledger_spend_since(month_start())


def max_cost(kind: str, model: str, request: ChatRequest) -> Decimal:
    """The most this call could cost: ~4 characters a token for the input, all of max_tokens
    for the output. Unpriced models cost nothing."""
    price = config_cache.price_for(kind, model)
    if price is None:
        return Decimal(0)
    text = request.system + "".join(m.content for m in request.messages)
    estimate = Usage(input_tokens=len(text) // 4 + 1, output_tokens=request.max_tokens)
    return usage_cost(estimate, price)


def check_before_call(
    *, kind: str, model: str, request: ChatRequest, run_cap: Decimal | None, run_spent: Decimal
) -> None:
    worst = max_cost(kind, model, request)
    if run_cap is not None and run_spent + worst > run_cap:
        raise BudgetExceeded(
            f"{quotas.REFUSAL_PREFIX} {kind}/{model}: it could cost up to ${worst}, and this run "
            f"has ${max(run_cap - run_spent, Decimal(0))} left of its ${run_cap} cap."
        )
    priced = config_cache.price_for(kind, model) is not None
    _check_workspace_spend(f"{kind}/{model}", worst, priced=priced)


def check_before_embedding(*, kind: str, model: str, texts: list[str]) -> None:
    """Before a priced embedding request: the same plan and monthly-budget checks as a model
    call, against the texts' estimated tokens."""
    price = config_cache.price_for(kind, model)
    if price is None:
        return
    estimate = Usage(input_tokens=sum(estimate_text_tokens(text) for text in texts))
    _check_workspace_spend(f"{kind}/{model}", usage_cost(estimate, price), priced=True)


@dataclass(frozen=True)
class SpendUsedUp:
    """Which AI-spend limit the workspace has used up: the plan's included spend (`allowance`,
    a plan without overage) or its monthly budget (`cap`)."""

    allowance: quotas.SpendAllowance | None = None
    cap: Decimal | None = None


def spend_used_up() -> SpendUsedUp | None:
    """The limit the workspace's AI spend has reached, checked before work that would answer
    without a model call (a visitor's question, a per-run listing's run: an answer from the
    response cache costs no spend), or None. `_check_workspace_spend` guards each call."""
    allowance = quotas.ai_spend_allowance(config_cache.billing_view())
    if (
        allowance is not None
        and allowance.capped
        and spend.spend_since(allowance.period_start) >= allowance.included_usd
    ):
        return SpendUsedUp(allowance=allowance)
    cap = config_cache.monthly_cap()
    if cap is not None and spend.spend_since(month_start()) >= cap:
        return SpendUsedUp(cap=cap)
    return None


def _check_workspace_spend(call: str, worst: Decimal, *, priced: bool) -> None:
    """Refuse a priced call when the workspace is read-only, and one that could cost `worst`
    when that could take the period's spend past the plan's included amount (plans without
    overage) or the month's past the workspace's budget. Unpriced (offline) models cost
    nothing against the plan."""
    if priced:
        allowance = quotas.ai_spend_allowance(config_cache.billing_view())
        if allowance is not None and allowance.paused:  # chat turns and embeddings too
            raise BudgetExceeded(f"{quotas.REFUSAL_PREFIX} {call}. {allowance.paused}")
        if allowance is not None and allowance.capped and worst > 0:
            spent = spend.spend_since(allowance.period_start)
            if spent + worst > allowance.included_usd:
                raise BudgetExceeded(
                    quotas.ai_spend_refusal_text(allowance, call=call, worst=worst, spent=spent)
                )
    cap = config_cache.monthly_cap()
    if cap is None:
        return
    spent = spend.spend_since(month_start())
    if spent + worst > cap:
        raise BudgetExceeded(
            f"{quotas.REFUSAL_PREFIX} {call}: it could cost up to ${worst}, and the "
            f"workspace has ${max(cap - spent, Decimal(0))} left of its "
            f"${cap} monthly budget. An owner can raise it on the Usage page."
        )


def warn_if_near_cap() -> None:
    """After a priced call: notify owners and admins once a month when spend passes 80 %."""
    if config_cache.monthly_cap() is None:
        return
    month = timezone.now().strftime("%Y-%m")
    with transaction.atomic():
        budget = WorkspaceBudget.objects.select_for_update().first()
        if budget is None or budget.monthly_cap_usd is None or budget.warned_for_month == month:
            return
        spent = month_spend()
        if spent < budget.monthly_cap_usd * WARN_AT:
            return
        budget.warned_for_month = month
        budget.save(update_fields=["warned_for_month", "updated_at"])
        workspace = Workspace.objects.get(schema_name=current_schema())
        cap = budget.monthly_cap_usd
        notify_on_commit(
            user_ids=admin_ids(workspace_id=workspace.pk),
            event=Event(
                kind=Kind.USAGE_WARNING,
                dedupe_key=f"budget:{workspace.pk}:{month}:80",
                title=f"{workspace.name} has used 80% of its monthly AI budget",
                body=(
                    f"Spend this month: ${spent} of ${cap}. Calls that could exceed the "
                    "budget will be refused. Raise it on the workspace's Usage page."
                ),
                url=reverse("usage", kwargs={"workspace_slug": workspace.slug}),
                workspace_id=workspace.pk,
            ),
        )


@transaction.atomic
def budget_set(*, access: Access, monthly_cap_usd: Decimal | None) -> WorkspaceBudget:
    access.require(Perm.WORKSPACE_UPDATE)
    if monthly_cap_usd is not None and monthly_cap_usd < Decimal("0.01"):
        raise ValidationFailed(
            "A budget must be at least $0.01 (or empty for none).",
            fields={"monthly_cap_usd": ["At least 0.01."]},
        )
    budget, _ = WorkspaceBudget.objects.select_for_update().get_or_create(pk=1)
    budget.monthly_cap_usd = monthly_cap_usd
    budget.warned_for_month = ""
    budget.save()
    return budget
