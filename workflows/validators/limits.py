"""(11) The plan's limits: steps, fan-out, map concurrency and literal map lists."""

from __future__ import annotations

import ast
from typing import Any

from workflows.limits import plan_limits
from workflows.validators.document import Document, Issue


def check_limits(document: dict[str, Any]) -> list[Issue]:
    """(11) Steps, fan-out, map concurrency and literal map lists within the plan."""
    doc = Document(document)
    limits = plan_limits()
    issues = []
    if len(doc.steps) > limits.max_steps:
        issues.append(
            Issue(
                "steps",
                f"has {len(doc.steps)} steps; this workspace's plan allows {limits.max_steps}",
            )
        )
    for step_id, i in doc.index.items():
        width = len(doc.successors[step_id])
        if width > limits.max_fan_out:
            issues.append(
                Issue(
                    doc.label(i),
                    f"has {width} outgoing edges; this workspace's plan allows "
                    f"{limits.max_fan_out}",
                )
            )
        if doc.steps[i]["type"] != "map":
            continue
        config = doc.config(i)
        concurrency = config.get("concurrency")
        if isinstance(concurrency, int) and concurrency > limits.max_map_concurrency:
            issues.append(
                Issue(
                    f"{doc.label(i)}.config.concurrency",
                    f"is {concurrency}; this workspace's plan allows {limits.max_map_concurrency}",
                )
            )
        items = config.get("items")
        if isinstance(items, str):
            try:
                literal = ast.literal_eval(items.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                literal = None
            if isinstance(literal, list | tuple) and len(literal) > limits.max_map_items:
                issues.append(
                    Issue(
                        f"{doc.label(i)}.config.items",
                        f"lists {len(literal)} items; this workspace's plan allows "
                        f"{limits.max_map_items}",
                    )
                )
    return issues
