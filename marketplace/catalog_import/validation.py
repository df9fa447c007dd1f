"""Validating one catalogue item in full before anything is written: its listing fields, and its
definition (an agent spec, or a workflow and the agent specs its steps name).

Workflow definitions get the structural checks of `workflows.validators` (schema, ids, edges,
cycles, entry, reachability, expressions, references, tools). The checks that read a workspace
schema (agents, model aliases, sub-workflows, plan limits) cannot run in the public schema;
instead, every agent step must name an agent the item's `agents` list defines, models must be
the `default` alias and sub-workflow steps are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from marketplace.catalog_import.agent_spec import validate_agent_spec
from marketplace.catalog_import.items import (
    CATEGORIES_FILE,
    DEFAULT_MODEL,
    FIELDS,
    REQUIRED_FIELDS,
    SLUG_PATTERN,
    CatalogItem,
    ItemError,
    Problems,
)
from marketplace.icons import is_single_icon
from marketplace.models import Listing
from workflows import validators

# The workflow checks that need no workspace schema, in `validators.CHECKS` order.
STRUCTURE_CHECKS = (
    validators.check_unique_ids,
    validators.check_edges,
    validators.check_acyclic,
    validators.check_single_entry,
    validators.check_reachable,
    validators.check_expressions,
    validators.check_references,
    validators.check_tools,
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_string_list(value: Any, name: str, limit: int, problems: Problems) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.add(name, "must be a list of non-empty strings")
    elif any(len(v) > limit for v in value):
        problems.add(name, f"entries must be at most {limit} characters")


def workflow_structure_issues(document: Any) -> list[str]:
    """The workflow validators' checks that need no workspace schema, as "path: message"."""
    issues = validators.check_schema(document)
    if not validators.graph_checkable(document):
        return [str(i) for i in issues] or ["definition: is not a workflow definition"]
    for check in STRUCTURE_CHECKS:
        issues += check(document)
    return [str(i) for i in dict.fromkeys(issues)]


def step_bodies(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, type, config) of every step and every map body."""
    for i, step in enumerate(document.get("steps") or []):
        config = step.get("config") or {}
        label = f"steps[{i}] ({step.get('id')})"
        yield label, step.get("type", ""), config
        if step.get("type") == "map":
            body = config.get("node") or {}
            yield f"{label}.config.node", body.get("type", ""), body.get("config") or {}


def _validate_workflow(definition: dict[str, Any], problems: Problems) -> None:
    unknown = sorted(set(definition) - {"workflow", "agents"})
    if unknown:
        problems.add("definition", f"unknown key(s) {', '.join(unknown)}")
    document = definition.get("workflow")
    agents = definition.get("agents", [])
    if not isinstance(agents, list):
        problems.add("definition.agents", "must be a list of agent specs")
        agents = []
    for i, spec in enumerate(agents):
        validate_agent_spec(spec, f"definition.agents[{i}]", problems)
    if not isinstance(document, dict):
        problems.add("definition.workflow", "must be a workflow definition (a mapping)")
        return
    for issue in workflow_structure_issues(document):
        problems.add("definition.workflow", issue)
    if problems.errors:
        return
    names = {spec.get("name") for spec in agents if isinstance(spec, dict)}
    for path, node_type, config in step_bodies(document):
        _check_catalog_step(f"definition.workflow.{path}", node_type, config, names, problems)


def _check_catalog_step(
    where: str, node_type: str, config: dict[str, Any], names: set[Any], problems: Problems
) -> None:
    """A step the catalogue can carry: agents named from the item, the `default` model, no
    sub-workflow."""
    if node_type == "agent" and "agent_id" in config:
        problems.add(
            f"{where}.config.agent_id",
            "is a workspace's own id; a snapshot names its agents (config.agent) only",
        )
    elif node_type == "agent" and config.get("agent") not in names:
        problems.add(
            f"{where}.config.agent",
            f"names {config.get('agent')!r}, which definition.agents does not define",
        )
    elif node_type == "sub_workflow":
        problems.add(where, "sub-workflow steps cannot be published")
    elif node_type in ("llm", "router") and config.get("model", DEFAULT_MODEL) not in (
        DEFAULT_MODEL,
        None,
    ):
        problems.add(f"{where}.config.model", f"must be '{DEFAULT_MODEL}'")


def validate_item(item: CatalogItem, *, category_slugs: set[str]) -> list[ItemError]:
    """Every problem of one item, each naming its field; [] when it can be imported."""
    problems = Problems(item.source)
    data = item.data
    _check_listing_fields(data, category_slugs, problems)
    _check_pricing(data, problems)
    examples = data.get("example_inputs", [])
    if not isinstance(examples, list | dict):
        problems.add("example_inputs", "must be a list of examples (or one mapping)")
    kind = data.get("kind")
    definition = data.get("definition")
    if definition and kind in Listing.Kind.values:
        if not isinstance(definition, dict):
            problems.add("definition", "must be a mapping")
        elif kind == Listing.Kind.AGENT:
            if set(definition) != {"agent"}:
                problems.add("definition", "an agent's definition is {agent: {…settings}}")
            else:
                validate_agent_spec(definition["agent"], "definition.agent", problems)
        else:
            _validate_workflow(definition, problems)
    return problems.errors


def _check_listing_fields(
    data: dict[str, Any], category_slugs: set[str], problems: Problems
) -> None:
    for name in REQUIRED_FIELDS:
        if data.get(name) in (None, "", [], {}):
            problems.add(name, "is required")
    for name in sorted(set(data) - set(FIELDS)):
        problems.add(name, f"is not a listing field (fields: {', '.join(FIELDS)})")
    slug = data.get("slug")
    if slug and (not isinstance(slug, str) or not SLUG_PATTERN.match(slug)):
        problems.add("slug", "must be 2–80 lowercase letters, digits and hyphens")
    kind = data.get("kind")
    if kind and kind not in Listing.Kind.values:
        problems.add("kind", f"must be one of {', '.join(Listing.Kind.values)}, not {kind!r}")
    for name, limit in (("title", 100), ("summary", 200)):
        value = data.get(name)
        if value and (not isinstance(value, str) or len(value.strip()) > limit):
            problems.add(name, f"must be a string of at most {limit} characters")
    if not isinstance(data.get("description", ""), str):
        problems.add("description", "must be Markdown text")
    category = data.get("category")
    if category and category not in category_slugs:
        problems.add("category", f"unknown category {category!r} (add it to {CATEGORIES_FILE})")
    for name in ("tags", "providers"):
        if name in data:
            _check_string_list(data[name], name, 30, problems)
    icon = data.get("icon", "")
    if not isinstance(icon, str) or (icon and not is_single_icon(icon)):
        problems.add("icon", "must be a single emoji")
    if not isinstance(data.get("changelog", ""), str):
        problems.add("changelog", "must be text")


PAID_REFUSED = "catalogue listings are free: the platform publisher has no payouts account"


def _check_pricing(data: dict[str, Any], problems: Problems) -> None:
    pricing = data.get("pricing", Listing.Pricing.FREE)
    price = data.get("price_cents", 0)
    if pricing not in Listing.Pricing.values:
        problems.add("pricing", f"must be one of {', '.join(Listing.Pricing.values)}")
    elif not _is_int(price) or price < 0:
        problems.add("price_cents", "must be a whole number of cents, 0 or more")
    elif pricing != Listing.Pricing.FREE:
        # A paid listing needs a publisher that can be paid (a Connect account, onboarded):
        # the platform publisher has none, so a priced item would show a price and install free.
        problems.add("pricing", f"{PAID_REFUSED} (not {pricing!r})")
    elif price:
        problems.add("price_cents", "must be 0 for a free listing")
