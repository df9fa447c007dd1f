"""Exporting a paid listing's copy (core.hooks.copy_exporting): refused, since an exported
document imports anywhere as an ordinary workflow, with no listing to ask or charge: a free
copy of what was sold. Duplicating an agent copy keeps its listing version instead (it stays
gated and charged; agents/services.py `agent_duplicate`)."""

from __future__ import annotations

from core.exceptions import PermissionDenied
from core.hooks import CopyExporting
from marketplace.models import Listing, ListingVersion
from marketplace.pricing import listing_path, price_terms


class PaidCopyExport(PermissionDenied):
    """A copy of a paid listing (or a workflow binding one) may not leave as a document: 403."""

    code = "paid_listing_copy"


def export_gate(event: CopyExporting) -> None:
    """Refuse when the workflow, or an agent its steps bind, is a copy of a paid listing
    version, whatever the billing mode (a document outlives it): the message names the listing,
    its price and where others buy it."""
    ids = {*event.agent_listing_version_ids}
    if event.listing_version_id is not None:
        ids.add(event.listing_version_id)
    paid = {
        version.pk: version
        for version in ListingVersion.objects.select_related("listing")
        .filter(pk__in=ids)
        .exclude(pricing=Listing.Pricing.FREE)
    }
    if not paid:
        return
    own = paid.get(event.listing_version_id or 0)
    version = own or paid[min(paid)]
    listing = version.listing
    what = (
        f"it is a copy of “{listing.title}”"
        if own is not None
        else f"its steps use an agent copied from “{listing.title}”"
    )
    raise PaidCopyExport(
        f"“{event.name}” cannot be exported: {what}, a paid marketplace listing "
        f"({price_terms(version)}), and an exported document would be a free copy of what was "
        f"sold. Other workspaces can buy it on its marketplace page, {listing_path(listing)}."
    )
