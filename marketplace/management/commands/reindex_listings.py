"""Index every marketplace listing again: its search text and its embedding with the configured
EMBEDDER (marketplace search embeds its queries with that one). Run it after changing EMBEDDER,
next to `manage.py reembed` (which re-embeds the workspaces' knowledge).

    manage.py reindex_listings
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from agents.embeddings import EmbeddingError
from marketplace.models import Listing
from marketplace.search_index import index_all


class Command(BaseCommand):
    help = "Re-index the marketplace listings (search text and embeddings, configured EMBEDDER)."

    def handle(self, *args: Any, **options: Any) -> None:
        total = Listing.objects.count()
        with tqdm(
            total=total, desc="marketplace", unit="listing", file=self.stderr, disable=total == 0
        ) as bar:

            def progress(done: int, _total: int) -> None:
                bar.update(done - bar.n)

            try:
                indexed = index_all(progress=progress)
            except EmbeddingError as exc:
                raise CommandError(f"Embedding failed for the marketplace listings: {exc}") from exc
        self.stdout.write(f"marketplace: {indexed} listing(s) embedded with {settings.EMBEDDER}.")
