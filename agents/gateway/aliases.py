"""Model aliases: a name agents use (`smart`) for an ordered list of provider models the
gateway tries in turn. Saving replaces the whole ordered list at once."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Prefetch, QuerySet

from agents.models import Agent, AliasTarget, ModelAlias, ProviderCredential, ProviderKind
from core.exceptions import Conflict, NotFound, ValidationFailed
from tenants import audit
from tenants.permissions import Access, Perm

MAX_TARGETS = 6


@dataclass(frozen=True)
class TargetSpec:
    kind: str
    model: str
    credential_id: int | None = None


def aliases_list(*, access: Access) -> QuerySet[ModelAlias]:
    access.require(Perm.WORKSPACE_VIEW)
    return ModelAlias.objects.prefetch_related(
        Prefetch("targets", queryset=AliasTarget.objects.select_related("credential"))
    ).order_by("name")


def alias_get(*, access: Access, alias_id: int) -> ModelAlias:
    alias = aliases_list(access=access).filter(pk=alias_id).first()
    if alias is None:
        raise NotFound("No model alias with that id in this workspace.")
    return alias


def _validated_targets(targets: list[TargetSpec]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if not targets:
        errors["targets"] = ["Add at least one provider model."]
    if len(targets) > MAX_TARGETS:
        errors["targets"] = [f"At most {MAX_TARGETS} targets."]
    credentials = {
        c.pk: c
        for c in ProviderCredential.objects.filter(
            pk__in=[t.credential_id for t in targets if t.credential_id]
        )
    }
    for number, target in enumerate(targets, start=1):
        where = f"targets.{number}"
        if target.kind not in ProviderKind.values:
            errors[f"{where}.kind"] = [f"Choose one of: {', '.join(ProviderKind.values)}."]
        if not target.model.strip() or len(target.model) > 128:
            errors[f"{where}.model"] = ["Name the provider's model (1–128 characters)."]
        if target.credential_id is not None:
            credential = credentials.get(target.credential_id)
            if credential is None:
                errors[f"{where}.credential"] = ["No such credential in this workspace."]
            elif credential.kind != target.kind:
                errors[f"{where}.credential"] = [
                    f"'{credential.name}' is a {credential.get_kind_display()} credential."
                ]
        elif target.kind == ProviderKind.OPENAI_COMPATIBLE:
            errors[f"{where}.credential"] = [
                "OpenAI-compatible servers need a credential with their base URL."
            ]
    return errors


@transaction.atomic
def alias_save(
    *,
    access: Access,
    name: str,
    description: str = "",
    targets: list[TargetSpec],
    alias_id: int | None = None,
) -> ModelAlias:
    """Create (no `alias_id`) or update an alias and replace its targets, in order."""
    access.require(Perm.WORKSPACE_UPDATE)
    name = (name or "").strip().lower()
    errors = _validated_targets(targets)
    alias = None
    if alias_id is not None:
        alias = ModelAlias.objects.select_for_update().filter(pk=alias_id).first()
        if alias is None:
            raise NotFound("No model alias with that id in this workspace.")
    if not name or len(name) > 40 or not name.replace("-", "").replace("_", "").isalnum():
        errors["name"] = ["Use 1–40 letters, digits, - or _ (e.g. smart, fast-cheap)."]
    elif ":" in name:
        errors["name"] = ["An alias cannot contain ':' (that is how provider:model is written)."]
    elif ModelAlias.objects.filter(name=name).exclude(pk=alias.pk if alias else 0).exists():
        errors["name"] = [f"An alias named '{name}' already exists."]
    if errors:
        raise ValidationFailed("The model alias could not be saved.", fields=errors)
    action = audit.Action.MODEL_ALIAS_UPDATED
    if alias is None:
        action = audit.Action.MODEL_ALIAS_CREATED
        alias = ModelAlias.objects.create(name=name, description=description.strip())
    else:
        renamed_from = alias.name
        if renamed_from != name and _agents_using(renamed_from):
            raise Conflict(
                f"Agents use '{renamed_from}' ({', '.join(_agents_using(renamed_from))}); "
                "rename is not possible while they do."
            )
        alias.name, alias.description = name, description.strip()
        alias.save(update_fields=["name", "description", "updated_at"])
        alias.targets.all().delete()
    AliasTarget.objects.bulk_create(
        AliasTarget(
            alias=alias,
            position=position,
            kind=target.kind,
            model=target.model.strip(),
            credential_id=target.credential_id,
        )
        for position, target in enumerate(targets)
    )
    audit.record_for(
        access,
        action=action,
        target=alias,
        metadata={"targets": [f"{t.kind}:{t.model.strip()}" for t in targets]},
    )
    return alias


def _agents_using(alias_name: str) -> list[str]:
    return list(
        Agent.objects.filter(current_version__model=alias_name, archived_at__isnull=True)
        .order_by("name")
        .values_list("name", flat=True)[:5]
    )


@transaction.atomic
def alias_delete(*, access: Access, alias_id: int) -> None:
    access.require(Perm.WORKSPACE_UPDATE)
    alias = ModelAlias.objects.select_for_update().filter(pk=alias_id).first()
    if alias is None:
        raise NotFound("No model alias with that id in this workspace.")
    users = _agents_using(alias.name)
    if users:
        raise Conflict(f"'{alias.name}' is used by {', '.join(users)}; point them elsewhere first.")
    audit.record_for(access, action=audit.Action.MODEL_ALIAS_DELETED, target=alias)
    alias.delete()
