"""Writing one validated item: a new listing with an approved version 1, a new version
(number + 1, approved and made current) when the definition, example inputs or providers
changed, an in-place update when only metadata changed; and keeping the search index in step."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from marketplace.catalog_import.items import PLATFORM_PUBLISHER, CatalogItem, CategorySpec
from marketplace.models import Category, Listing, ListingVersion, Publisher
from marketplace.search_index import index_listing
from marketplace.snapshot import required_tools


def _examples(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, dict) else list(value)


def listing_metadata(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": data["kind"],
        "title": data["title"].strip(),
        "summary": " ".join(data["summary"].split()),
        "description": (data.get("description") or "").strip(),
        "tags": list(data.get("tags") or []),
        "icon": data.get("icon") or "",
        "providers": list(data.get("providers") or []),
        # Always free (validation refuses a paid item: the platform publisher cannot be paid);
        # written so a listing imported with a price before is made free again.
        "pricing": Listing.Pricing.FREE,
        "price_cents": 0,
    }


def platform_publisher() -> Publisher:
    publisher, _ = Publisher.objects.get_or_create(
        slug=PLATFORM_PUBLISHER["slug"],
        defaults={
            "display_name": PLATFORM_PUBLISHER["display_name"],
            "verified": True,
            "workspace": None,
        },
    )
    return publisher


def upsert_categories(specs: list[CategorySpec]) -> int:
    for spec in specs:
        Category.objects.update_or_create(
            slug=spec.slug,
            defaults={
                "name": spec.name,
                "description": spec.description,
                "icon": spec.icon,
                "position": spec.position,
            },
        )
    return len(specs)


def _new_version(
    listing: Listing, *, number: int, data: dict[str, Any], definition: dict[str, Any]
) -> ListingVersion:
    now = timezone.now()
    version = ListingVersion.objects.create(
        listing=listing,
        number=number,
        changelog=(data.get("changelog") or "").strip(),
        definition=definition,
        required_tools=required_tools(listing.kind, definition),
        required_providers=list(data.get("providers") or []),
        example_inputs=_examples(data.get("example_inputs")),
        status=ListingVersion.Status.APPROVED,
        moderation_reason="Platform catalogue import.",
        moderated_at=now,
        source_kind=listing.kind,
    )
    listing.current_version = version
    if listing.published_at is None:
        listing.published_at = now
    listing.save(update_fields=["current_version", "published_at", "updated_at"])
    return version


def _differences(
    listing: Listing, *, data: dict[str, Any], category_id: int | None
) -> tuple[list[str], bool]:
    """(listing fields that differ, whether the version content differs)."""
    metadata = listing_metadata(data)
    current = listing.current_version
    behaviour_changed = (
        current is None
        or current.definition != data["definition"]
        or current.example_inputs != _examples(data.get("example_inputs"))
        or list(current.required_providers) != list(data.get("providers") or [])
    )
    changed_fields = [f for f, v in metadata.items() if getattr(listing, f) != v]
    if listing.category_id != category_id:
        changed_fields.append("category")
    return changed_fields, behaviour_changed


def outcome_preview(item: CatalogItem) -> str:
    """What importing the item would do, without writing (for a dry run)."""
    listing = Listing.objects.select_related("current_version").filter(slug=item.slug).first()
    if listing is None:
        return "created"
    category_id = (
        Category.objects.filter(slug=item.data["category"]).values_list("pk", flat=True).first()
    )
    changed_fields, behaviour_changed = _differences(
        listing, data=item.data, category_id=category_id
    )
    return "updated" if changed_fields or behaviour_changed else "unchanged"


def write_item(
    item: CatalogItem, *, publisher: Publisher, categories: dict[str, Category]
) -> tuple[str, Listing | None]:
    """("created" | "updated" | "unchanged", the listing to re-index or None)."""
    data = item.data
    metadata = listing_metadata(data)
    category = categories[data["category"]]
    definition = data["definition"]
    listing = (
        Listing.objects.select_for_update(of=("self",))
        .select_related("current_version")
        .filter(slug=data["slug"])
        .first()
    )
    if listing is None:
        listing = Listing.objects.create(
            publisher=publisher, slug=data["slug"], category=category, **metadata
        )
        _new_version(listing, number=1, data=data, definition=definition)
        return "created", listing
    changed_fields, behaviour_changed = _differences(listing, data=data, category_id=category.pk)
    if not behaviour_changed and not changed_fields:
        return "unchanged", None
    if changed_fields:
        for name in changed_fields:
            setattr(listing, name, category if name == "category" else metadata[name])
        listing.save(update_fields=[*changed_fields, "updated_at"])
    if behaviour_changed:
        last = listing.versions.order_by("-number").values_list("number", flat=True).first()
        _new_version(listing, number=(last or 0) + 1, data=data, definition=definition)
    return "updated", listing


def index_listings(listings: list[Listing]) -> None:
    for listing in listings:
        listing.refresh_from_db()
        index_listing(listing)
