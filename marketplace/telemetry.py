"""Run completion → the listing's statistics. Subscribed to `core.hooks.run_finished` in
`MarketplaceConfig.ready()`; agents and workflows fire it after a run's final state committed.

Only numbers leave the workspace (succeeded, latency, cost), through
`marketplace.services.record_run`. A cancelled run says nothing about a listing's quality and is
not counted. A failure here is logged by the hook and never fails the run: the run's own state
is the truth, statistics are a convenience.
"""

from __future__ import annotations

from core.hooks import RunFinished
from marketplace import services
from tenants.models import Workspace


def record_finished_run(event: RunFinished) -> None:
    if event.listing_version_id is None or event.cancelled:
        return
    workspace = Workspace.objects.filter(schema_name=event.schema_name).first()
    if workspace is None:
        return
    services.record_run(
        listing_version_id=event.listing_version_id,
        succeeded=event.succeeded,
        latency_ms=event.latency_ms,
        cost_usd=event.cost_usd,
        workspace=workspace,
    )
