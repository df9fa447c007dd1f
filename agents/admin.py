"""The back-office view of workspace data: agents, runs, conversations, knowledge, the cache,
outbound hosts, the ledger and webhook deliveries. One workspace at a time (chosen in the
admin, see `tenants.scoped_admin`); read-only except cached answers (deletable) and allowed
hosts (add and remove, audited like the workspace page)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from agents.models import (
    Agent,
    AgentRun,
    AgentVersion,
    AllowedHost,
    CachedResponse,
    Conversation,
    ConversationTurn,
    KnowledgeBase,
    KnowledgeDocument,
    UsageRecord,
    WebhookDelivery,
)
from agents.outbound.services import HOST_ADDED, HOST_REMOVED, host_validate
from core.exceptions import ValidationFailed
from tenants import audit
from tenants.scoped_admin import (
    ReadOnlyInline,
    ReadOnlyScopedAdmin,
    WorkspaceScopedAdmin,
    request_workspace,
)


def _preview(text: str, length: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


class AgentVersionInline(ReadOnlyInline):
    model = AgentVersion
    fields = ("number", "model", "tools", "max_tokens", "cache_enabled", "created_at")
    readonly_fields = fields
    ordering = ("-number",)


@admin.register(Agent)
class AgentAdmin(ReadOnlyScopedAdmin):
    list_display = ("name", "category", "version_number", "created_at", "archived_at")
    list_filter = (("archived_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("name", "description", "category")
    list_select_related = ("current_version",)
    inlines = (AgentVersionInline,)

    @admin.display(description="Current version", ordering="current_version__number")
    def version_number(self, obj: Agent) -> str:
        return f"v{obj.current_version.number}" if obj.current_version else "—"


@admin.register(AgentRun)
class AgentRunAdmin(ReadOnlyScopedAdmin):
    list_display = (
        "id",
        "agent",
        "status",
        "cache_hit",
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "cache_hit", "created_at")
    search_fields = ("input", "output", "error", "api_key_prefix")
    list_select_related = ("agent",)
    date_hierarchy = "created_at"


class ConversationTurnInline(ReadOnlyInline):
    model = ConversationTurn
    fields = ("created_at", "status", "question", "answer", "cost_usd", "cache_hit")
    readonly_fields = fields


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyScopedAdmin):
    list_display = ("__str__", "agent", "turn_count", "created_by_id", "updated_at")
    search_fields = ("title",)
    list_select_related = ("agent",)
    inlines = (ConversationTurnInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        conversations: QuerySet[Conversation] = super().get_queryset(request)
        return conversations.annotate(turns_total=Count("turns"))

    @admin.display(description="Turns", ordering="turns_total")
    def turn_count(self, obj: Any) -> int:
        return int(obj.turns_total)


class KnowledgeDocumentInline(ReadOnlyInline):
    model = KnowledgeDocument
    fields = ("filename", "content_type", "size_bytes", "status", "chunks_done", "chunks_total")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[KnowledgeDocument]:
        return super().get_queryset(request).defer("content")


@admin.register(KnowledgeBase)
class KnowledgeBaseAdmin(ReadOnlyScopedAdmin):
    list_display = ("name", "embedder", "document_count", "updated_at")
    search_fields = ("name", "description")
    inlines = (KnowledgeDocumentInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[KnowledgeBase]:
        bases: QuerySet[KnowledgeBase] = super().get_queryset(request)
        return bases.annotate(documents_total=Count("documents"))

    @admin.display(description="Documents", ordering="documents_total")
    def document_count(self, obj: Any) -> int:
        return int(obj.documents_total)


@admin.register(KnowledgeDocument)
class KnowledgeDocumentAdmin(ReadOnlyScopedAdmin):
    list_display = (
        "filename",
        "knowledge_base",
        "status",
        "size_bytes",
        "chunks_done",
        "created_at",
    )
    list_filter = ("status",)
    search_fields = ("filename", "sha256")
    list_select_related = ("knowledge_base",)
    exclude = ("content",)  # the uploaded file itself is never rendered

    def get_queryset(self, request: HttpRequest) -> QuerySet[KnowledgeDocument]:
        return super().get_queryset(request).defer("content")


@admin.register(CachedResponse)
class CachedResponseAdmin(WorkspaceScopedAdmin):
    """Read-only, but staff may delete entries (a wrong answer that keeps being served)."""

    list_display = (
        "id",
        "prompt_preview",
        "model",
        "hits",
        "cost_usd",
        "created_at",
        "last_hit_at",
    )
    search_fields = ("prompt", "answer", "model")
    list_filter = ("model",)
    exclude = ("embedding",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[CachedResponse]:
        return super().get_queryset(request).defer("embedding")

    @admin.display(description="Prompt")
    def prompt_preview(self, obj: CachedResponse) -> str:
        return _preview(obj.prompt)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AllowedHostForm(forms.ModelForm):
    class Meta:
        model = AllowedHost
        fields = ("host",)

    def clean_host(self) -> str:
        try:
            return host_validate(self.cleaned_data["host"])
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.fields["host"]) from exc


@admin.register(AllowedHost)
class AllowedHostAdmin(WorkspaceScopedAdmin):
    """Added and removed, never edited in place; both audited in the workspace's log."""

    form = AllowedHostForm
    list_display = ("host", "created_by_id", "created_at")
    search_fields = ("host",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _audit(self, request: HttpRequest, action: str, obj: AllowedHost) -> None:
        audit.record(
            action=action,
            actor=request.user,
            workspace=request_workspace(request),
            target=obj,
            metadata={"via": "admin"},
        )

    def save_model(self, request: HttpRequest, obj: AllowedHost, form: Any, change: bool) -> None:
        obj.created_by_id = request.user.pk
        super().save_model(request, obj, form, change)
        self._audit(request, HOST_ADDED, obj)

    def delete_model(self, request: HttpRequest, obj: AllowedHost) -> None:
        self._audit(request, HOST_REMOVED, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AllowedHost]) -> None:
        for obj in queryset:
            self._audit(request, HOST_REMOVED, obj)
        super().delete_queryset(request, queryset)


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyScopedAdmin):
    list_display = (
        "created_at",
        "kind",
        "model",
        "outcome",
        "purpose",
        "attempt",
        "fallback",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "output_tokens",
        "estimated",
        "cost_usd",
        "saved_usd",
        "latency_ms",
        "agent_id",
        "run_id",
    )
    list_filter = ("outcome", "purpose", "estimated", "kind", "fallback", "created_at")
    search_fields = ("model", "alias", "error")
    date_hierarchy = "created_at"


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyScopedAdmin):
    list_display = ("id", "event", "url", "status", "attempts", "last_status_code", "created_at")
    list_filter = ("status", "event")
    search_fields = ("url", "last_error")
    list_select_related = ("run",)
