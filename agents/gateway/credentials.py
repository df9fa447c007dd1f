"""Workspace provider credentials: add (key encrypted at rest), remove, check the connection."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError, QuerySet

from agents.models import ProviderCredential, ProviderKind
from agents.outbound.guard import check_public_url
from agents.providers.base import ChatRequest, Message, ProviderConfig, ProviderError
from agents.providers.registry import get_provider
from core.exceptions import Conflict, NotFound, ValidationFailed
from tenants import audit
from tenants.permissions import Access, Perm

NEEDS_KEY = {ProviderKind.ANTHROPIC, ProviderKind.OPENAI}


def credentials_list(*, access: Access) -> QuerySet[ProviderCredential]:
    access.require(Perm.WORKSPACE_UPDATE)
    return ProviderCredential.objects.order_by("name")


@transaction.atomic
def credential_create(
    *, access: Access, name: str, kind: str, api_key: str = "", base_url: str = ""
) -> ProviderCredential:
    access.require(Perm.WORKSPACE_UPDATE)
    errors: dict[str, list[str]] = {}
    name, api_key, base_url = name.strip(), api_key.strip(), base_url.strip()
    if not name:
        errors["name"] = ["Give the credential a name."]
    elif ProviderCredential.objects.filter(name=name).exists():
        errors["name"] = [f"A credential named '{name}' already exists."]
    if kind not in ProviderKind.values or kind == ProviderKind.OFFLINE:
        errors["kind"] = ["Choose Anthropic, OpenAI or an OpenAI-compatible server."]
    if kind in NEEDS_KEY and not api_key:
        errors["api_key"] = ["This provider needs an API key."]
    if kind == ProviderKind.OPENAI_COMPATIBLE and not base_url:
        errors["base_url"] = ["Give the server's base URL, e.g. http://ollama:11434/v1."]
    if base_url and "base_url" not in errors:
        try:
            check_public_url(base_url, field="base_url")
        except ValidationFailed as exc:
            errors["base_url"] = exc.fields["base_url"]
    if errors:
        raise ValidationFailed("The credential could not be saved.", fields=errors)
    credential = ProviderCredential(name=name, kind=kind, base_url=base_url)
    credential.set_api_key(api_key)
    credential.save()
    audit.record_for(
        access,
        action=audit.Action.PROVIDER_KEY_ADDED,
        target=credential,
        metadata={"kind": kind, "base_url": base_url},
    )
    return credential


def _get(credential_id: int) -> ProviderCredential:
    credential = ProviderCredential.objects.filter(pk=credential_id).first()
    if credential is None:
        raise NotFound("No provider credential with that id in this workspace.")
    return credential


def credential_delete(*, access: Access, credential_id: int) -> None:
    access.require(Perm.WORKSPACE_UPDATE)
    credential = _get(credential_id)
    with transaction.atomic():  # the audit row goes when the delete is refused
        audit.record_for(access, action=audit.Action.PROVIDER_KEY_REMOVED, target=credential)
        try:
            credential.delete()
        except ProtectedError as exc:
            raise Conflict(
                f"'{credential.name}' is used by a model alias; change the alias first."
            ) from exc


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str
    latency_ms: int


def credential_check(*, access: Access, credential_id: int, model: str) -> CheckResult:
    """One tiny real call (a one-token answer) to prove the key, URL and model work."""
    access.require(Perm.WORKSPACE_UPDATE)
    credential = _get(credential_id)
    if not model.strip():
        raise ValidationFailed("Name a model to test with.", fields={"model": ["Required."]})
    config = ProviderConfig(
        kind=credential.kind,
        api_key=credential.api_key(),
        base_url=credential.base_url or None,
        timeout=min(settings.GATEWAY_TIMEOUT_SECONDS, 20.0),
    )
    started = time.perf_counter()
    try:
        get_provider(config).complete(
            ChatRequest(
                model=model.strip(), max_tokens=1, messages=(Message(role="user", content="ping"),)
            )
        )
    except ProviderError as exc:
        result = CheckResult(False, exc.message, int((time.perf_counter() - started) * 1000))
    else:
        latency = int((time.perf_counter() - started) * 1000)
        result = CheckResult(True, f"Connected: {model.strip()} answered in {latency} ms.", latency)
    audit.record_for(
        access,
        action=audit.Action.PROVIDER_KEY_CHECKED,
        target=credential,
        metadata={"model": model.strip(), "ok": result.ok, "message": result.message[:200]},
    )
    return result
