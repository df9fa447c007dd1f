"""What the client returns: frozen dataclasses whose field names are the API's JSON keys.

Each model reads only the keys it declares (`api_fields()`); `raw` keeps the whole object, so
a field the API adds later is reachable before this package names it.
`tests/sdk/test_schema_contract.py` checks every declared key against the OpenAPI schema."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

# Agent runs say "canceled", workflow runs "cancelled": both are final.
FINISHED = frozenset({"succeeded", "failed", "canceled", "cancelled"})
STEP_FINISHED = frozenset({"succeeded", "failed", "skipped", "cancelled"})


@dataclass(frozen=True)
class Model:
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def api_fields(cls) -> tuple[str, ...]:
        """The JSON keys this model reads."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "raw")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        values = {name: _convert(cls, name, data.get(name)) for name in cls.api_fields()}
        return cls(raw=data, **values)


def _convert(cls: type[Model], name: str, value: Any) -> Any:
    nested = NESTED.get((cls.__name__, name))
    if nested is not None and isinstance(value, list):
        return tuple(nested.from_json(item) for item in value if isinstance(item, dict))
    if isinstance(value, list):
        return tuple(value)
    return value


@dataclass(frozen=True)
class Workspace(Model):
    id: int
    name: str
    slug: str


@dataclass(frozen=True)
class Agent(Model):
    id: int
    name: str
    description: str
    category: str
    current_version: dict[str, Any] | None
    created_at: str
    archived_at: str | None

    @property
    def model(self) -> str:
        """The model of its current version."""
        return str((self.current_version or {}).get("model", ""))


@dataclass(frozen=True)
class AgentRun(Model):
    id: int
    agent: int
    agent_version: int
    status: str
    input: str
    output: str
    output_data: Any
    error: str
    input_tokens: int
    output_tokens: int
    cost_usd: str | None
    created_at: str
    finished_at: str | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class Workflow(Model):
    id: int
    name: str
    description: str
    category: str
    active_version: int | None
    created_at: str
    archived_at: str | None


@dataclass(frozen=True)
class Step(Model):
    """One step run of a workflow run (a map step has its per-item runs in `items`)."""

    id: int
    node_id: str
    node_type: str
    status: str
    attempt: int
    output: Any
    error: str
    branch: str
    duration_ms: int | None
    items: tuple[dict[str, Any], ...]

    @property
    def finished(self) -> bool:
        return self.status in STEP_FINISHED


@dataclass(frozen=True)
class WorkflowRun(Model):
    id: int
    workflow: int
    workflow_name: str
    version: int
    status: str
    trigger: str
    inputs: dict[str, Any]
    output: Any
    error: str
    input_tokens: int
    output_tokens: int
    cost_usd: str | None
    created_at: str
    finished_at: str | None
    steps: tuple[Step, ...]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class ListingVersionStatus(Model):
    number: int
    status: str
    moderation_reason: str
    changelog: str
    created_at: str


@dataclass(frozen=True)
class PublishedVersion(Model):
    """A submitted listing version: `pending` until staff moderate it."""

    listing: str
    number: int
    status: str
    moderation_reason: str
    pricing: str
    price_cents: int


@dataclass(frozen=True)
class MyListing(Model):
    slug: str
    kind: str
    title: str
    is_public: bool
    current_version: int | None
    versions: tuple[ListingVersionStatus, ...]


NESTED: dict[tuple[str, str], type[Model]] = {
    ("WorkflowRun", "steps"): Step,
    ("MyListing", "versions"): ListingVersionStatus,
}

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class RunEvent:
    """A change seen while watching a workflow run: the run's status (`step` is None) or one
    step's status."""

    run: WorkflowRun
    step: Step | None = None

    @property
    def kind(self) -> str:
        return "run" if self.step is None else "step"
