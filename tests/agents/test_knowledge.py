"""Knowledge bases end to end: ingestion on a real Celery worker (redelivery-safe, with
progress), the knowledge_search tool (cited passages from the agent's own bases only, filtered
HNSW scans that still fill up), agents answering with citations offline and through the real
openai SDK, cache invalidation, re-embedding, and the optional local embedder."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django_tenants.utils import schema_context

from agents import services as agent_services
from agents.embeddings import EmbeddingError, HashingEmbedder, get_embedder
from agents.knowledge import selectors, services
from agents.knowledge.chunking import chunk_blocks
from agents.knowledge.demo import DEMO_BASE_NAME, seed_demo_knowledge
from agents.knowledge.parsers import parse
from agents.knowledge.services import EMBED_BATCH_SIZE
from agents.knowledge.tasks import ingest_document
from agents.models import (
    Agent,
    AgentRun,
    CachedResponse,
    KnowledgeBase,
    KnowledgeChunk,
    KnowledgeDocument,
)
from agents.providers.offline import LABEL
from agents.runs.executor import execute_run
from agents.tools.base import ToolContext, ToolFailed
from agents.tools.knowledge import KnowledgeSearch
from tenants.models import Workspace
from tenants.permissions import Access
from tests.fakes import FakeOpenAI
from tests.helpers.personas import World, access_of

REFUND_QUESTION = "How long do refunds take?"
SEARCH = KnowledgeSearch()


def _handbook(paragraphs: int) -> bytes:
    """A text long enough for several embedding batches (one ~600-character paragraph per
    chunk)."""
    topics = ["refunds", "invoices", "passwords", "shipping", "plans", "seats", "support"]
    body = []
    for i in range(paragraphs):
        topic = topics[i % len(topics)]
        sentence = f"Section {i} covers {topic} in detail for customers of Loopdesk."
        body.append(" ".join([sentence] * 9))
    return "\n\n".join(body).encode()


def _run(access: Access, agent: Agent, text: str) -> AgentRun:
    run = agent_services.agent_run_start(access=access, agent_id=agent.pk, input=text)
    execute_run(run.pk)
    run.refresh_from_db()
    return run


# -- ingestion on a real worker ---------------------------------------------------------------


@pytest.mark.worker
def test_an_upload_is_ingested_by_a_real_worker_and_a_redelivery_yields_the_same_chunks(
    committed_world: World, worker_queue: str
) -> None:
    access = access_of(committed_world.owner, committed_world.workspace_a)
    data = _handbook(70)
    expected = chunk_blocks(parse("text/plain", data))
    assert len(expected) > 2 * EMBED_BATCH_SIZE  # several batches, so progress moves in steps
    with schema_context(committed_world.workspace_a.schema_name):
        base = services.knowledge_base_create(access=access, name="Handbook")
        # The upload commits and queues the ingestion on the worker...
        document = services.document_upload(
            access=access,
            knowledge_base_id=base.pk,
            file=SimpleUploadedFile("handbook.txt", data),
        )
        assert document.status == KnowledgeDocument.Status.QUEUED
        # ...and the same task delivered a second time (as after a worker crash with
        # acks_late). The solo worker takes tasks in order, so this result also means the
        # first delivery has finished.
        second = ingest_document.apply_async(args=[document.pk])
        assert second.get(timeout=90) == KnowledgeDocument.Status.READY

        document.refresh_from_db()
        assert document.status == KnowledgeDocument.Status.READY
        assert document.error == ""
        assert document.chunks_total == document.chunks_done == len(expected)
        chunks = list(KnowledgeChunk.objects.filter(document=document).order_by("position"))
        assert [(c.position, c.location, c.text) for c in chunks] == [
            (i, c.location, c.text) for i, c in enumerate(expected)
        ]
        assert all(c.embedding is not None for c in chunks)
        base.refresh_from_db()
        assert base.embedder == HashingEmbedder.name


def test_embedding_progress_is_counted_per_batch_and_a_failed_document_can_be_retried(
    owner_access: Access, workspace_a: Workspace, fake_openai: FakeOpenAI, settings
) -> None:
    settings.EMBEDDER = "openai"
    settings.LLM_PLATFORM_KEYS = {**settings.LLM_PLATFORM_KEYS, "openai": "sk-test"}
    settings.LLM_PLATFORM_BASE_URLS = {
        **settings.LLM_PLATFORM_BASE_URLS,
        "openai": fake_openai.base_url,
    }
    # The first batch is embedded; the second fails (the SDK tries 3 times).
    fake_openai.queue(endpoint="embeddings")
    for _ in range(3):
        fake_openai.queue_error(500, endpoint="embeddings")
    with schema_context(workspace_a.schema_name):
        base = services.knowledge_base_create(access=owner_access, name="Handbook")
        document = services.document_create(
            knowledge_base=base, filename="handbook.txt", data=_handbook(70)
        )
        total = len(chunk_blocks(parse("text/plain", _handbook(70))))

        assert services.document_ingest(document_id=document.pk) == "failed"
        document.refresh_from_db()
        assert document.error.startswith(
            f"Embedding failed after {EMBED_BATCH_SIZE} of {total} passages: OpenAI embeddings"
        )
        assert KnowledgeChunk.objects.filter(document=document).count() == 0

        retried = services.document_retry(
            access=owner_access, knowledge_base_id=base.pk, document_id=document.pk
        )
        assert retried.status == KnowledgeDocument.Status.QUEUED
        assert retried.error == ""
        assert services.document_ingest(document_id=document.pk) == "ready"
        document.refresh_from_db()
        assert document.chunks_done == document.chunks_total == total
        assert len(fake_openai.requests_to("embeddings")) == 3 + 1 + -(-total // EMBED_BATCH_SIZE)
        base.refresh_from_db()
        assert base.embedder == "openai-text-embedding-3-small-384"


# -- the knowledge_search tool ----------------------------------------------------------------


@pytest.fixture
def help_center(db: None, in_alpha: None) -> KnowledgeBase:
    return seed_demo_knowledge()


def test_the_demo_help_center_is_seeded_once(help_center: KnowledgeBase) -> None:
    again = seed_demo_knowledge()
    assert again.pk == help_center.pk
    assert again.name == DEMO_BASE_NAME
    documents = KnowledgeDocument.objects.filter(knowledge_base=help_center)
    assert sorted(d.filename for d in documents) == [
        "billing.md",
        "password-reset.md",
        "plans.md",
        "refunds.md",
        "shipping.md",
    ]
    assert {d.status for d in documents} == {KnowledgeDocument.Status.READY}
    assert KnowledgeChunk.objects.filter(knowledge_base=help_center).count() == sum(
        d.chunks_total for d in documents
    )


def test_search_returns_numbered_cited_passages_with_the_right_one_first(
    help_center: KnowledgeBase,
) -> None:
    output = SEARCH.run(
        {"query": REFUND_QUESTION}, ToolContext(knowledge_base_ids=(help_center.pk,))
    )
    lines = output.splitlines()
    assert lines[1].startswith("[1] refunds.md, How long refunds take: Once approved, refunds")
    assert "5 business days" in lines[1]
    assert [line[:3] for line in lines[1:6]] == ["[1]", "[2]", "[3]", "[4]", "[5]"]
    assert "cite each one you use" in lines[-1]
    assert "[1]" in lines[-1]

    password = SEARCH.run(
        {"query": "I forgot my password and the reset email never arrived", "top_k": 2},
        ToolContext(knowledge_base_ids=(help_center.pk,)),
    )
    assert password.splitlines()[1].startswith("[1] password-reset.md, ")
    assert "[3]" not in password


def test_search_reads_only_the_agents_own_bases(help_center: KnowledgeBase) -> None:
    other = KnowledgeBase.objects.create(name="Competitor notes")
    leak = services.document_create(
        knowledge_base=other,
        filename="othercorp.md",
        data=b"# How long refunds take\n\nHow long do refunds take? At OtherCorp: 45 weeks.",
    )
    services.document_ingest(document_id=leak.pk)

    own = SEARCH.run(
        {"query": REFUND_QUESTION, "top_k": 10}, ToolContext(knowledge_base_ids=(help_center.pk,))
    )
    assert "othercorp.md" not in own
    assert "45 weeks" not in own
    assert len([line for line in own.splitlines() if line.startswith("[")]) == 10
    # The same passage is the best match once its base is one the agent reads.
    both = SEARCH.run(
        {"query": REFUND_QUESTION}, ToolContext(knowledge_base_ids=(help_center.pk, other.pk))
    )
    assert both.splitlines()[1].startswith("[1] othercorp.md, How long refunds take:")


def test_an_agent_without_knowledge_bases_is_told_so(in_alpha: None) -> None:
    with pytest.raises(ToolFailed, match="no knowledge base"):
        SEARCH.run({"query": REFUND_QUESTION}, ToolContext(knowledge_base_ids=()))
    with pytest.raises(ToolFailed, match="top_k"):
        SEARCH.validate({"query": REFUND_QUESTION, "top_k": 11})


def test_a_filtered_index_scan_still_returns_full_results(help_center: KnowledgeBase) -> None:
    # Given a big base whose passages are all nearer the question than the small base's...
    crowd = KnowledgeBase.objects.create(name="Crowd", embedder=HashingEmbedder.name)
    crowd_doc = KnowledgeDocument.objects.create(
        knowledge_base=crowd, filename="crowd.txt", content_type="text/plain",
        size_bytes=1, sha256="0" * 64, content=b"x", status="ready",
    )  # fmt: skip
    texts = [f"How long do refunds take? Refunds variant {i}." for i in range(400)]
    vectors = get_embedder("hashing").embed(texts)
    KnowledgeChunk.objects.bulk_create(
        KnowledgeChunk(document=crowd_doc, knowledge_base=crowd, position=i, text=t, embedding=v)
        for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
    )
    small = KnowledgeBase.objects.create(name="Small", embedder=HashingEmbedder.name)
    small_doc = services.document_create(
        knowledge_base=small,
        filename="small.md",
        data=b"# Shipping\n\nWe ship worldwide.\n\n# Desks\n\nDesks are oak.\n\n# Chairs\n\nBlue.",
    )
    services.document_ingest(document_id=small_doc.pk)
    with connection.cursor() as cursor:  # make the planner use the HNSW index, as on big tables
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        query = get_embedder("hashing").embed([REFUND_QUESTION])[0]
        from pgvector.django import CosineDistance

        plain = (
            KnowledgeChunk.objects.filter(knowledge_base=small, embedding__isnull=False)
            .annotate(distance=CosineDistance("embedding", query))
            .order_by("distance")[:3]
        )
        assert "knowledge_chunk_embedding" in plain.explain()
        # ...a plain filtered HNSW scan only sees the crowd's passages and finds too few.
        cursor.execute("SET LOCAL hnsw.iterative_scan = off")
        assert len(list(plain)) < 3

    found = selectors.knowledge_search(
        knowledge_base_ids=[small.pk], query=REFUND_QUESTION, top_k=5
    )
    assert len(found) == 3
    assert {p.filename for p in found} == {"small.md"}
    assert [p.distance for p in found] == sorted(p.distance for p in found)


# -- agents answering with citations ----------------------------------------------------------


def test_an_offline_agent_run_answers_with_a_citation(
    owner_access: Access, help_center: KnowledgeBase
) -> None:
    agent = agent_services.agent_create(
        access=owner_access,
        name="Support",
        model="offline:demo",
        tools=["knowledge_search"],
        knowledge_base_ids=[help_center.pk],
    )
    run = _run(owner_access, agent, REFUND_QUESTION)
    assert run.status == AgentRun.Status.SUCCEEDED, run.error
    assert run.output.startswith(f"{LABEL} The tool returned: Once approved, refunds")
    assert "5 business days" in run.output
    assert "[1]" in run.output
    assert "Sources: [1] refunds.md, How long refunds take" in run.output
    assert run.tool_steps[0]["tool"] == "knowledge_search"
    assert run.tool_steps[0]["ok"]
    assert run.tool_steps[0]["arguments"] == {"query": REFUND_QUESTION}


def test_arithmetic_still_goes_to_the_calculator_when_both_tools_are_offered(
    owner_access: Access, help_center: KnowledgeBase
) -> None:
    agent = agent_services.agent_create(
        access=owner_access,
        name="Both",
        model="offline:demo",
        tools=["calculator", "knowledge_search"],
        knowledge_base_ids=[help_center.pk],
    )
    run = _run(owner_access, agent, "What is 29 * 12?")
    assert run.tool_steps[0]["tool"] == "calculator"
    assert "348" in run.output


def test_a_model_searches_then_answers_citing_through_the_openai_sdk(
    owner_access: Access, help_center: KnowledgeBase, fake_openai: FakeOpenAI, fake_model: str
) -> None:
    agent = agent_services.agent_create(
        access=owner_access,
        name="Support",
        model=fake_model,
        tools=["knowledge_search"],
        knowledge_base_ids=[help_center.pk],
    )
    fake_openai.queue(tool_calls=[("knowledge_search", {"query": "refund duration", "top_k": 3})])
    fake_openai.queue("Refunds reach your card within 5 business days [1].")
    run = _run(owner_access, agent, REFUND_QUESTION)

    assert run.status == AgentRun.Status.SUCCEEDED, run.error
    assert run.output == "Refunds reach your card within 5 business days [1]."
    first, second = (r.body for r in fake_openai.requests_to("chat/completions"))
    assert first["tools"][0]["function"]["name"] == "knowledge_search"
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool"
    assert "[1] refunds.md, " in tool_message["content"]
    assert "[4]" not in tool_message["content"]
    assert run.tool_steps[0]["output"] == tool_message["content"]


# -- cache invalidation -----------------------------------------------------------------------


def test_uploading_or_deleting_a_document_drops_cached_answers_of_agents_reading_the_base(
    owner_access: Access, help_center: KnowledgeBase
) -> None:
    reader = agent_services.agent_create(
        access=owner_access,
        name="Reader",
        model="offline:demo",
        tools=["knowledge_search"],
        knowledge_base_ids=[help_center.pk],
        cache_enabled=True,
    )
    bystander = agent_services.agent_create(
        access=owner_access, name="Bystander", model="offline:demo", cache_enabled=True
    )
    _run(owner_access, reader, REFUND_QUESTION)
    _run(owner_access, bystander, "Hello there")
    assert _run(owner_access, reader, REFUND_QUESTION).cache_hit is True

    document = services.document_upload(
        access=owner_access,
        knowledge_base_id=help_center.pk,
        file=SimpleUploadedFile("new-policy.md", b"# Refunds\n\nRefunds now take 2 days."),
    )
    services.document_ingest(document_id=document.pk)  # what the worker runs
    assert list(CachedResponse.objects.values_list("version__agent__name", flat=True)) == [
        "Bystander"
    ]
    assert _run(owner_access, reader, REFUND_QUESTION).cache_hit is False

    services.document_delete(
        access=owner_access, knowledge_base_id=help_center.pk, document_id=document.pk
    )
    assert not CachedResponse.objects.filter(version__agent=reader).exists()
    assert CachedResponse.objects.filter(version__agent=bystander).count() == 1


def test_a_base_read_by_an_agent_cannot_be_deleted(
    owner_access: Access, help_center: KnowledgeBase
) -> None:
    from core.exceptions import Conflict

    agent_services.agent_create(
        access=owner_access,
        name="Reader",
        model="offline:demo",
        tools=["knowledge_search"],
        knowledge_base_ids=[help_center.pk],
    )
    with pytest.raises(Conflict, match="read by Reader"):
        services.knowledge_base_delete(access=owner_access, knowledge_base_id=help_center.pk)
    assert KnowledgeBase.objects.filter(pk=help_center.pk).exists()


# -- re-embedding and embedders ---------------------------------------------------------------


def test_reembed_switches_the_embedder_empties_the_cache_and_search_still_works(
    owner_access: Access, help_center: KnowledgeBase, fake_openai: FakeOpenAI, settings
) -> None:
    settings.LLM_PLATFORM_KEYS = {**settings.LLM_PLATFORM_KEYS, "openai": "sk-test"}
    settings.LLM_PLATFORM_BASE_URLS = {
        **settings.LLM_PLATFORM_BASE_URLS,
        "openai": fake_openai.base_url,
    }
    agent = agent_services.agent_create(
        access=owner_access, name="Cached", model="offline:demo", cache_enabled=True
    )
    _run(owner_access, agent, "Hello")
    assert CachedResponse.objects.count() == 1
    chunks = KnowledgeChunk.objects.filter(knowledge_base=help_center).count()

    out, err = StringIO(), StringIO()
    call_command("reembed", workspace="alpha", embedder="openai", stdout=out, stderr=err)

    help_center.refresh_from_db()
    assert help_center.embedder == "openai-text-embedding-3-small-384"
    assert CachedResponse.objects.count() == 0
    assert f"alpha: {chunks} chunk(s) in 1 knowledge base(s) embedded" in out.getvalue()
    assert f"{chunks}/{chunks}" in err.getvalue()  # the progress bar reached the end
    embedded = sum(len(r.body["input"]) for r in fake_openai.requests_to("embeddings"))
    assert embedded == chunks

    # Queries now go through the base's embedder too, and still find the right passage.
    output = SEARCH.run(
        {"query": REFUND_QUESTION}, ToolContext(knowledge_base_ids=(help_center.pk,))
    )
    assert output.splitlines()[1].startswith("[1] refunds.md, How long refunds take:")
    assert fake_openai.requests_to("embeddings")[-1].body["input"] == [REFUND_QUESTION]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workspace": "nowhere"}, "--workspace: no workspace with slug 'nowhere'."),
        ({"workspace": "alpha", "knowledge_base": 999999}, "no knowledge base 999999"),
        ({"knowledge_base": 1}, "--knowledge-base needs --workspace"),
        ({"embedder": "word2vec"}, "--embedder: unknown embedder 'word2vec'. Known: hashing"),
        ({"embedder": "local"}, "local-embeddings extra"),
    ],
)
def test_reembed_names_what_is_wrong(world: World, options: dict, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(".", r"\.")):
        call_command("reembed", stdout=StringIO(), stderr=StringIO(), **options)


def test_the_local_embedder_without_its_extra_says_which_extra_to_install(
    owner_access: Access, in_alpha: None, settings
) -> None:
    with pytest.raises(EmbeddingError) as missing:
        get_embedder("local")
    assert "pip install 'agentmarket[local-embeddings]'" in str(missing.value)

    settings.EMBEDDER = "local"
    base = services.knowledge_base_create(access=owner_access, name="Local")
    document = services.document_create(knowledge_base=base, filename="a.md", data=b"# A\n\nText.")
    assert services.document_ingest(document_id=document.pk) == "failed"
    document.refresh_from_db()
    assert document.error.startswith("Embedding failed: The 'local' embedder needs the")
    assert "local-embeddings" in document.error
