"""Is a real model provider set up in this workspace? Read by the workspace banner (shown on
every workspace page while no provider is configured) and by the first-run checklist.

Without a provider every agent answers through the offline model: runs "succeed" with
deterministic placeholder text, which a new user cannot tell from a real answer. Each check
is computed only when a template reads it, so a page that shows no checklist pays for one
cached `exists()` at most."""

from __future__ import annotations

from functools import cached_property

from django.conf import settings

from agents.gateway import config_cache
from agents.models import AliasTarget, ProviderCredential, ProviderKind, UsageRecord
from tenants import audit
from tenants.models import AuditEvent
from tenants.permissions import Access, Perm

DEFAULT_ALIAS = "default"  # what a new agent's model field starts with (agents/forms.py)


def platform_keys_configured() -> bool:
    """The operator set a platform-wide key (ANTHROPIC_API_KEY / OPENAI_API_KEY)."""
    return any(settings.LLM_PLATFORM_KEYS.values())


class ProviderSetup:
    """The three first-run steps of a workspace, each read lazily."""

    def __init__(self, access: Access) -> None:
        self.access = access

    @property
    def can_configure(self) -> bool:
        return self.access.can(Perm.WORKSPACE_UPDATE)

    @cached_property
    def has_provider(self) -> bool:
        """A workspace credential exists, or the platform has a key of its own."""
        if platform_keys_configured():
            return True
        return config_cache.cached(("has_credential",), lambda: ProviderCredential.objects.exists())

    @cached_property
    def checked(self) -> bool:
        """A connection check succeeded, or a real (non-offline) model has answered here."""
        return (
            AuditEvent.objects.filter(
                workspace=self.access.workspace,
                action=audit.Action.PROVIDER_KEY_CHECKED,
                metadata__ok=True,
            ).exists()
            or UsageRecord.objects.filter(outcome=UsageRecord.Outcome.OK)
            .exclude(kind=ProviderKind.OFFLINE)
            .exists()
        )

    @cached_property
    def default_alias_real(self) -> bool:
        """The `default` alias exists and its first target is a real provider."""
        first = (
            AliasTarget.objects.filter(alias__name=DEFAULT_ALIAS)
            .order_by("position")
            .values_list("kind", flat=True)
            .first()
        )
        return first is not None and first != ProviderKind.OFFLINE

    @property
    def done(self) -> bool:
        return self.has_provider and self.checked and self.default_alias_real

    @property
    def steps_done(self) -> int:
        return sum((self.has_provider, self.checked, self.default_alias_real))
