"""Which model names an agent may be saved with, and the picker that offers them.

A name is known when it is

- a model alias of this workspace (`default`, `smart`), or
- `provider:model` with a row in the platform's price table (`anthropic:claude-sonnet-4-5`):
  a model the platform has no price for could not be costed, and a typo in it would only show
  up when a run fails, or
- `offline:<anything>`: the built-in offline provider answers any model name, for free.

Anything else is refused when the agent is saved, with a message that says which of these
three it failed to be (docs/decisions.md §39). Call these in the workspace's schema.
"""

from __future__ import annotations

from decimal import Decimal

from agents.models import ModelAlias, ProviderKind
from billing.models import ModelPrice

OFFLINE_EXAMPLE = "offline:demo"
_PRICED_KINDS = [k for k in ProviderKind.values if k != ProviderKind.OFFLINE]


def _dollars(amount: Decimal) -> str:
    return f"${amount.normalize():f}"


def _priced(kind: str, model: str) -> bool:
    return ModelPrice.objects.filter(provider=kind, model=model).exists()


def model_problem(name: str) -> str:
    """Why `name` cannot be an agent's model here, or "" when it can."""
    name = (name or "").strip()
    if not name:
        return "Choose a model alias or provider:model."
    if ModelAlias.objects.filter(name=name).exists():
        return ""
    kind, colon, model = name.partition(":")
    if not colon:
        return (
            f"There is no model alias “{name}” in this workspace. Choose one from the list, or "
            "write provider:model (e.g. offline:demo)."
        )
    if kind not in ProviderKind.values:
        return (
            f"“{kind}” is not a provider this platform supports ({', '.join(ProviderKind.values)})."
        )
    if not model:
        return f"Name the {kind} model after the colon, e.g. {kind}:<model>."
    if kind == ProviderKind.OFFLINE or _priced(kind, model):
        return ""
    return (
        f"“{name}” is not a model this platform knows (it has no price in the price table). "
        "Choose one from the list, or use a model alias of this workspace."
    )


def model_choices(current: str = "") -> list[tuple[str, list[tuple[str, str]]]]:
    """The picker's groups: this workspace's aliases, then each provider's priced models, then
    the offline model; `current` is kept (in its own group) when it is none of those, so an
    edit never silently changes an agent's model."""
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    aliases = [
        (a.name, f"{a.name} — {a.description}" if a.description else a.name)
        for a in ModelAlias.objects.order_by("name")
    ]
    if aliases:
        groups.append(("Model aliases of this workspace", aliases))
    prices = ModelPrice.objects.filter(provider__in=_PRICED_KINDS).order_by("provider", "model")
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for price in prices:
        value = f"{price.provider}:{price.model}"
        label = (
            f"{value} ({_dollars(price.input_per_mtok)} in / "
            f"{_dollars(price.output_per_mtok)} out per Mtok)"
        )
        by_kind.setdefault(price.provider, []).append((value, label))
    labels = dict(ProviderKind.choices)
    for kind in _PRICED_KINDS:
        if kind in by_kind:
            groups.append((str(labels[kind]), by_kind[kind]))
    groups.append(
        (str(labels[ProviderKind.OFFLINE]), [(OFFLINE_EXAMPLE, f"{OFFLINE_EXAMPLE} — free")])
    )
    listed = {value for _, options in groups for value, _ in options}
    if current and current not in listed:
        groups.insert(0, ("Current", [(current, current)]))
    return groups


def default_model() -> str:
    """What a new agent's picker starts on: `default` when the workspace has it, else its
    first alias, else the offline model."""
    names = list(ModelAlias.objects.order_by("name").values_list("name", flat=True))
    if "default" in names:
        return "default"
    return names[0] if names else OFFLINE_EXAMPLE
