"""Telling live run pages that something changed.

The engine calls `run_changed(run_id, step_ids)` after each transition commits (through
`transaction.on_commit`). The message is tiny — which run, which step runs — and the run page's
consumer re-reads those rows from the database and sends the rendered fragments, so a message
can never carry stale state and a dropped one is repaired by the next or by a reconnect (which
renders the whole run from the database first).

Group: `<schema>.workflow-run.<run_id>` (group names are global in Redis).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from tenants.schemas import current_schema

logger = logging.getLogger(__name__)


def run_group(schema_name: str, run_id: int) -> str:
    return f"{schema_name}.workflow-run.{run_id}"


def run_changed(run_id: int, step_ids: Iterable[int] = ()) -> None:
    """Publish after commit. Never raises: a live page is a convenience, the database is the
    truth, and a run must not fail because Redis hiccuped."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "run.changed", "run": run_id, "steps": sorted(set(step_ids))}
    try:
        async_to_sync(layer.group_send)(run_group(current_schema(), run_id), message)
    except Exception:  # see docstring
        logger.warning("could not publish a change of workflow run %s", run_id, exc_info=True)
