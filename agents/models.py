from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from pgvector.django import HnswIndex, VectorField

from core import crypto

EMBEDDING_DIMENSIONS = 384


class ProviderKind(models.TextChoices):
    OFFLINE = "offline", "Offline (no network)"
    ANTHROPIC = "anthropic", "Anthropic"
    OPENAI = "openai", "OpenAI"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (Ollama, vLLM, LM Studio)"


class ProviderCredential(models.Model):
    """A workspace's own key for a provider. The key is encrypted at rest and only its last
    four characters are ever shown again."""

    name = models.CharField(max_length=60, unique=True)
    kind = models.CharField(max_length=32, choices=ProviderKind.choices)
    base_url = models.URLField(
        blank=True,
        help_text="OpenAI-compatible servers (required), or a proxy in front of a provider.",
    )
    api_key_encrypted = models.TextField(blank=True)
    key_hint = models.CharField(max_length=8, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_api_key(self, api_key: str) -> None:
        self.api_key_encrypted = crypto.encrypt(api_key) if api_key else ""
        self.key_hint = crypto.mask(api_key) if api_key else ""

    def api_key(self) -> str:
        return crypto.decrypt(self.api_key_encrypted) if self.api_key_encrypted else ""


class ModelAlias(models.Model):
    """A name agents use (`smart`, `fast`) for an ordered list of provider models to try."""

    name = models.SlugField(max_length=40, unique=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "model aliases"

    def __str__(self) -> str:
        return self.name


class AliasTarget(models.Model):
    """One step of an alias's fallback order. Without a credential the platform default for
    the provider kind is used (keys from the environment; the offline provider needs none)."""

    alias = models.ForeignKey(ModelAlias, on_delete=models.CASCADE, related_name="targets")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=32, choices=ProviderKind.choices)
    credential = models.ForeignKey(
        ProviderCredential, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    model = models.CharField(max_length=128)

    class Meta:
        ordering = ["alias", "position"]
        constraints = [
            models.UniqueConstraint(fields=["alias", "position"], name="one_target_per_position"),
        ]

    def __str__(self) -> str:
        return f"{self.alias.name}#{self.position}: {self.kind}/{self.model}"


class UsageRecord(models.Model):
    """The ledger: one row per provider call attempt (model or embedding), priced when it is
    made. The row is written `pending` before the request is sent and completed when the
    attempt ends, so an attempt whose worker died stays visible. Token columns are split the
    way they are priced; "tokens in" is their sum (`Usage.tokens_in`, docs/gateway.md)."""

    class Outcome(models.TextChoices):
        OK = "ok", "Answered"
        ERROR = "error", "Failed"
        SKIPPED = "skipped", "Skipped (circuit open)"
        CACHED = "cached", "Answered from cache"
        PENDING = "pending", "Sent, no outcome recorded (in progress or interrupted)"

    class Purpose(models.TextChoices):
        ANSWER = "", "Answer"
        CACHE_EXACT = "cache_exact", "Cache hit (exact)"
        CACHE_SEMANTIC = "cache_semantic", "Cache hit (semantic)"
        CACHE_CHECK = "cache_check", "Check of a semantic cache hit"
        EMBEDDING = "embedding", "Embedding"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    agent_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    run_id = models.BigIntegerField(null=True, blank=True)
    alias = models.CharField(max_length=40, blank=True)
    kind = models.CharField(max_length=32)
    model = models.CharField(max_length=128)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    attempt = models.PositiveSmallIntegerField(default=1)
    fallback = models.BooleanField(default=False, help_text="A later target of the alias.")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_input_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    estimated = models.BooleanField(
        default=False,
        help_text="The provider did not report every count; the missing ones were estimated.",
    )
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    retry_delay_ms = models.PositiveIntegerField(default=0)
    saved_usd = models.DecimalField(
        max_digits=14, decimal_places=6, default=0, help_text="What a cache hit did not spend."
    )
    purpose = models.CharField(
        max_length=16,
        choices=Purpose.choices,
        blank=True,
        default=Purpose.ANSWER,
        help_text="Why the row exists: an answer, a cache hit of a tier, a cache check or an "
        "embedding.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(cost_usd__gte=0), name="usage_cost_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}/{self.model} {self.outcome} ${self.cost_usd}"


class MemoryMode(models.TextChoices):
    NONE = "none", "No memory"
    LAST_TURNS = "last_turns", "Last N turns"
    SUMMARY = "summary", "Running summary"


class Agent(models.Model):
    """A named agent. Its behaviour lives in immutable versions; `current_version` is the one
    new runs use."""

    name = models.CharField(max_length=80)
    description = models.CharField(max_length=300, blank=True)
    category = models.CharField(max_length=40, blank=True)
    current_version = models.ForeignKey(
        "AgentVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Installed from the marketplace: the public ListingVersion id it is a pinned copy of.
    listing_version_id = models.BigIntegerField(null=True, blank=True)
    created_by_id = models.BigIntegerField(null=True, blank=True)  # a public-schema user id
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # Reachable over A2A (a2a_server; docs/a2a.md): chosen by the workspace's owners and admins.
    a2a_exposed = models.BooleanField(default=False)
    # Offered as a tool on the workspace's MCP endpoint (mcp_server); owners opt in. Decision 114.
    mcp_exposed = models.BooleanField(default=False)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            # Workflows hold agents by id; the name is what people choose by, so two active
            # agents never share one (an archived agent's name is free again). Decision 39.
            models.UniqueConstraint(
                Lower("name"),
                condition=Q(archived_at__isnull=True),
                name="agent_name_unique_ci",
                violation_error_message="An agent with this name already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class AgentVersion(models.Model):
    """One saved configuration of an agent. Never updated: every save makes a new version."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    model = models.CharField(max_length=170, help_text="A model alias or provider:model.")
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(default=1024)
    tools = models.JSONField(default=list, blank=True)
    memory_mode = models.CharField(
        max_length=16, choices=MemoryMode.choices, default=MemoryMode.NONE
    )
    memory_turns = models.PositiveSmallIntegerField(default=10)
    max_tool_calls = models.PositiveSmallIntegerField(default=8)
    max_cost_per_run_usd = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True
    )
    blocked_patterns = models.JSONField(default=list, blank=True)
    output_schema = models.JSONField(null=True, blank=True)
    knowledge_base_ids = models.JSONField(
        default=list, blank=True, help_text="Knowledge bases the knowledge_search tool reads."
    )
    cache_enabled = models.BooleanField(
        default=True,
        help_text="Answer a question asked again (same words, same context) from the cache.",
    )
    cache_semantic = models.BooleanField(
        default=False,
        help_text="Also answer rephrased questions from the cache (embedding distance plus "
        "the near-miss guard).",
    )
    cache_verify = models.BooleanField(
        default=False,
        help_text="Ask the agent's model whether a semantic hit answers the new question "
        "before serving it (the check is paid for and booked in the ledger).",
    )
    cache_per_user = models.BooleanField(
        default=False,
        help_text="Answers depend on who asks: keep each person's cached answers to them.",
    )
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["agent", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="agent_version_number"),
            models.CheckConstraint(
                condition=Q(temperature__isnull=True)
                | (Q(temperature__gte=0) & Q(temperature__lte=2)),
                name="agent_version_temperature_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent.name} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("Agent versions are immutable; create a new version instead.")
        super().save(*args, **kwargs)


class AgentRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    input = models.TextField()
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    output_data = models.JSONField(
        null=True,
        blank=True,
        help_text="The answer parsed as JSON, when the version has an output schema.",
    )
    tool_steps = models.JSONField(default=list, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    cache_hit = models.BooleanField(default=False)
    cache_entry_id = models.BigIntegerField(
        null=True, blank=True, help_text="The cache entry that answered (while it exists)."
    )
    cache_reported_at = models.DateTimeField(
        null=True, blank=True, help_text="When someone marked the cached answer as wrong."
    )
    created_by_id = models.BigIntegerField(null=True, blank=True)
    api_key_prefix = models.CharField(max_length=16, blank=True)
    callback_url = models.URLField(max_length=2000, blank=True)
    attempt = models.PositiveSmallIntegerField(
        default=0,
        help_text="Attempts started; more than one means a worker was lost mid-run and the run "
        "was started again (agents/runs/executor.py).",
    )
    conversation = models.ForeignKey(
        "Conversation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        help_text="The A2A context this run is a turn of: it sees the earlier runs (memory).",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.agent_id} ({self.status})"


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to a callback URL, with every attempt's outcome."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(
        AgentRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="webhook_deliveries",
    )
    workflow_run_id = models.BigIntegerField(
        null=True, blank=True, db_index=True, help_text="Set for a workflow run's webhook."
    )
    event = models.CharField(max_length=40)
    url = models.URLField(max_length=2000)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} → {self.url} ({self.status})"


class WorkspaceBudget(models.Model):
    """The workspace's monthly spending cap (one row). Calls that could exceed it are refused
    before they are made; owners and admins are mailed once a month at 80 %."""

    monthly_cap_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    warned_for_month = models.CharField(max_length=7, blank=True)  # "2026-11"
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(monthly_cap_usd__isnull=True) | Q(monthly_cap_usd__gt=0),
                name="budget_cap_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"${self.monthly_cap_usd}/month" if self.monthly_cap_usd else "no budget"


class AllowedHost(models.Model):
    """A host the HTTP request tool may reach in this workspace (`api.example.com`, or
    `*.example.com` for its subdomains). With no entries the tool refuses every URL."""

    host = models.CharField(max_length=253, unique=True)
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["host"]

    def __str__(self) -> str:
        return self.host


class Conversation(models.Model):
    """A chat with one agent. Turns remember the version that answered them."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=120, blank=True)
    summary = models.TextField(blank=True, help_text="The running summary (summary memory).")
    summary_turns = models.PositiveIntegerField(
        default=0, help_text="How many turns the summary covers."
    )
    created_by_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    # A visitor's conversation through a share link or widget (docs/embed.md): the share and
    # the end user's id (chosen by the workspace's backend, or random for anonymous visitors).
    share = models.ForeignKey(
        "ChatShare", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    end_user_id = models.CharField(max_length=128, blank=True)
    # An A2A context (docs/a2a.md, decision 125): the opaque contextId issued to the remote
    # caller; its turns are agent runs (AgentRun.conversation), not chat turns.
    context_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["share", "end_user_id"],
                condition=Q(share__isnull=False),
                name="conversation_one_per_end_user",
            ),
            models.UniqueConstraint(
                fields=["context_id"],
                condition=~Q(context_id=""),
                name="conversation_unique_context_id",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class ConversationTurn(models.Model):
    """One question and its answer, with what answering it cost."""

    class Status(models.TextChoices):
        STREAMING = "streaming", "Answering"
        DONE = "done", "Answered"
        FAILED = "failed", "Failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    question = models.TextField()
    answer = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.STREAMING)
    error = models.TextField(blank=True)
    tool_steps = models.JSONField(default=list, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    cache_hit = models.BooleanField(default=False)
    cache_entry_id = models.BigIntegerField(
        null=True, blank=True, help_text="The cache entry that answered (while it exists)."
    )
    cache_reported_at = models.DateTimeField(
        null=True, blank=True, help_text="When someone marked the cached answer as wrong."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "created_at", "id"]

    def __str__(self) -> str:
        return f"turn {self.pk} of conversation {self.conversation_id}"


class KnowledgeBase(models.Model):
    """A searchable set of documents; agents read it through the knowledge_search tool."""

    name = models.CharField(max_length=80, unique=True)
    description = models.CharField(max_length=300, blank=True)
    embedder = models.CharField(
        max_length=40, blank=True, help_text="The embedder its chunks were embedded with."
    )
    contents_version = models.PositiveIntegerField(
        default=1, help_text="Goes up whenever its documents change (part of cache keys)."
    )
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class KnowledgeDocument(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    knowledge_base = models.ForeignKey(
        KnowledgeBase, on_delete=models.CASCADE, related_name="documents"
    )
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size_bytes = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    content = models.BinaryField(help_text="The uploaded file, kept so it can be re-embedded.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["knowledge_base", "sha256"], name="knowledge_document_once_per_base"
            ),
        ]

    def __str__(self) -> str:
        return self.filename


class KnowledgeChunk(models.Model):
    document = models.ForeignKey(KnowledgeDocument, on_delete=models.CASCADE, related_name="chunks")
    knowledge_base = models.ForeignKey(
        KnowledgeBase, on_delete=models.CASCADE, related_name="chunks"
    )
    position = models.PositiveIntegerField()
    text = models.TextField()
    location = models.CharField(max_length=80, blank=True, help_text="e.g. 'page 3', 'row 12'.")
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True)

    class Meta:
        ordering = ["document", "position"]
        indexes = [
            HnswIndex(
                name="knowledge_chunk_embedding",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["document", "position"], name="one_chunk_per_position"),
        ]

    def __str__(self) -> str:
        return f"{self.document.filename} #{self.position}"


class CachedResponse(models.Model):
    """One cached answer (agents/cache/responses.py): found again by its exact key, or, for versions
    with the semantic tier, by the embedding of its question among entries of the same
    context key."""

    version = models.ForeignKey(
        AgentVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    model = models.CharField(max_length=170)
    prompt = models.TextField(help_text="The whole prompt, for people reading the cache.")
    question = models.TextField(help_text="The question as it was asked.")
    key_sha256 = models.CharField(max_length=64, help_text="Everything that changes the answer.")
    context_sha256 = models.CharField(
        max_length=64, help_text="The key without the question (semantic candidates share it)."
    )
    user_id = models.BigIntegerField(null=True, blank=True)
    embedder = models.CharField(max_length=40)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    answer = models.TextField()
    tool_steps = models.JSONField(default=list, blank=True)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    hits = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    last_hit_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            HnswIndex(
                name="cached_response_embedding",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            models.Index(fields=["key_sha256"], name="cached_response_exact"),
            models.Index(fields=["context_sha256", "embedder"], name="cached_response_context"),
            models.Index(fields=["version"], name="cached_response_version"),
        ]

    def __str__(self) -> str:
        return f"cache {self.pk} ({self.model})"


class CacheReport(models.Model):
    """Someone marked an answer served from the cache as wrong; the entry was evicted."""

    class Tier(models.TextChoices):
        EXACT = "exact", "Exact"
        SEMANTIC = "semantic", "Semantic"

    agent_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    version_id = models.BigIntegerField(null=True, blank=True)
    tier = models.CharField(max_length=16, choices=Tier.choices, blank=True)
    question = models.TextField(help_text="The question the cached answer was served for.")
    cached_question = models.TextField(blank=True, help_text="The question it was cached for.")
    answer = models.TextField(blank=True)
    run_id = models.BigIntegerField(null=True, blank=True)
    turn_id = models.BigIntegerField(null=True, blank=True)
    reported_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"wrong cache answer reported {self.created_at:%Y-%m-%d}"


class McpServerConnection(models.Model):
    """A remote MCP server (Streamable HTTP) whose tools this workspace's agents may use
    (docs/mcp.md). Its URL passes the outbound guard and the host allowlist on every connection;
    the optional credential header value is encrypted at rest and shown only by its hint."""

    name = models.SlugField(
        max_length=20, unique=True, help_text="Lower case letters, digits and _; in tool names."
    )
    url = models.URLField(max_length=2000)
    header_name = models.CharField(max_length=100, default="Authorization", blank=True)
    credential_encrypted = models.TextField(blank=True)
    credential_hint = models.CharField(max_length=8, blank=True)
    # The tools as last fetched and validated: [{"name", "description", "input_schema"}].
    tools = models.JSONField(default=list, blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_credential(self, value: str) -> None:
        self.credential_encrypted = crypto.encrypt(value) if value else ""
        self.credential_hint = crypto.mask(value) if value else ""

    def credential(self) -> str:
        return crypto.decrypt(self.credential_encrypted) if self.credential_encrypted else ""


class ChatShare(models.Model):
    """An agent shared as a public chat page and a script widget (docs/embed.md). The key in
    its URL is the only secret; regenerating it breaks old links and tokens, revoking it
    answers 404 everywhere."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="shares")
    key = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=80, help_text="The name visitors see.")
    greeting = models.CharField(max_length=300, blank=True)
    accent_colour = models.CharField(max_length=7, default="#4f46e5")
    show_powered_by = models.BooleanField(default=True)
    allowed_origins = models.JSONField(default=list, blank=True)
    logo = models.BinaryField(null=True, blank=True)
    logo_type = models.CharField(max_length=32, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title
