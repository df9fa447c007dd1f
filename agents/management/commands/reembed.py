"""Embed every knowledge chunk again, e.g. after changing EMBEDDER.

    manage.py reembed                                  # every workspace, the configured embedder
    manage.py reembed --workspace demo --knowledge-base 3 --embedder openai

Each base records the embedder it now uses (searches embed queries with it), and each
workspace's semantic response cache is emptied: its prompt vectors came from the old embedder.
The marketplace's listings are re-indexed by `manage.py reindex_listings` (with the configured
EMBEDDER, which marketplace search embeds its queries with).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from agents.embeddings import EMBEDDERS, EmbeddingError, get_embedder
from agents.knowledge.services import knowledge_base_reembed
from agents.models import CachedResponse, KnowledgeBase, KnowledgeChunk
from tenants.models import Workspace
from tenants.schemas import each_live_workspace, live_workspaces


class Command(BaseCommand):
    help = "Re-embed knowledge chunks with an embedder and empty the response caches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", help="workspace slug (default: every workspace)")
        parser.add_argument(
            "--knowledge-base", type=int, help="one knowledge base id (needs --workspace)"
        )
        parser.add_argument(
            "--embedder",
            help=f"one of {', '.join(sorted(EMBEDDERS))} (default: the EMBEDDER setting)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        kind = options["embedder"] or settings.EMBEDDER
        if kind not in EMBEDDERS:
            raise CommandError(
                f"--embedder: unknown embedder '{kind}'. Known: {', '.join(sorted(EMBEDDERS))}."
            )
        try:
            embedder = get_embedder(kind)
        except EmbeddingError as exc:
            raise CommandError(f"--embedder: {exc}") from exc
        base_id = options["knowledge_base"]
        slug = options["workspace"]
        if base_id is not None and not slug:
            raise CommandError("--knowledge-base needs --workspace (ids are per workspace).")
        workspaces = live_workspaces()
        if slug:
            workspaces = workspaces.filter(slug=slug)
            if not workspaces.exists():
                raise CommandError(f"--workspace: no workspace with slug '{slug}'.")
        for workspace in each_live_workspace(workspaces.order_by("slug")):
            self._reembed_workspace(workspace, embedder, base_id)

    def _reembed_workspace(self, workspace: Workspace, embedder: Any, base_id: int | None) -> None:
        bases = KnowledgeBase.objects.order_by("pk")
        if base_id is not None:
            bases = bases.filter(pk=base_id)
            if not bases.exists():
                raise CommandError(
                    f"--knowledge-base: no knowledge base {base_id} in workspace "
                    f"'{workspace.slug}'."
                )
        total = KnowledgeChunk.objects.filter(knowledge_base__in=bases).count()
        with tqdm(
            total=total,
            desc=f"{workspace.slug}",
            unit="chunk",
            file=self.stderr,
            disable=total == 0,
        ) as bar:
            for base in bases:
                try:
                    knowledge_base_reembed(
                        knowledge_base=base, embedder=embedder, on_progress=bar.update
                    )
                except EmbeddingError as exc:
                    raise CommandError(
                        f"Embedding failed in '{workspace.slug}', base {base.pk}: {exc}"
                    ) from exc
        dropped, _ = CachedResponse.objects.all().delete()
        self.stdout.write(
            f"{workspace.slug}: {total} chunk(s) in {bases.count()} knowledge base(s) embedded "
            f"with {embedder.name}; {dropped} cached response(s) dropped."
        )
