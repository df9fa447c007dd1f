"""The model alias editor: an ordered fallback list per alias, errors beside the row."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents import services
from agents.models import AliasTarget, ModelAlias, ProviderCredential
from tests.helpers.personas import World, access_of

pytestmark = pytest.mark.django_db


def _url(name: str, slug: str = "alpha", **kwargs: int) -> str:
    return reverse(name, kwargs={"workspace_slug": slug, **kwargs})


def _post(rows: list[dict[str, Any]], **fields: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "smart",
        "description": "Claude, then GPT",
        "targets-TOTAL_FORMS": str(len(rows)),
        "targets-INITIAL_FORMS": "0",
        "targets-MIN_NUM_FORMS": "0",
        "targets-MAX_NUM_FORMS": "6",
        **fields,
    }
    for index, row in enumerate(rows):
        for key, value in row.items():
            data[f"targets-{index}-{key}"] = value
    return data


@pytest.fixture
def credential(world: World) -> ProviderCredential:
    with schema_context(world.workspace_a.schema_name):
        credential = ProviderCredential(name="Team Anthropic", kind="anthropic")
        credential.set_api_key("sk-ant-test-1234")
        credential.save()
        return credential


def test_owner_creates_an_alias_with_an_ordered_fallback_list(
    world: World, owner_client: Client, credential: ProviderCredential
) -> None:
    rows = [
        {"kind": "anthropic", "credential": str(credential.pk), "model": "claude-sonnet-4-5"},
        {"kind": "openai", "credential": "", "model": "gpt-4.1"},
        {"kind": "offline", "credential": "", "model": ""},  # left empty: ignored
    ]
    response = owner_client.post(_url("model_alias_create"), _post(rows))
    assert response.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        alias = ModelAlias.objects.get(name="smart")
        targets = list(alias.targets.values_list("position", "kind", "model", "credential"))
    assert targets == [
        (0, "anthropic", "claude-sonnet-4-5", credential.pk),
        (1, "openai", "gpt-4.1", None),
    ]
    page = owner_client.get(_url("model_aliases")).content.decode()
    assert "claude-sonnet-4-5" in page
    assert "Team Anthropic" in page
    assert "platform key" in page


def test_editing_reorders_the_targets(world: World, owner_client: Client) -> None:
    with schema_context(world.workspace_a.schema_name):
        alias = ModelAlias.objects.create(name="smart")
        AliasTarget.objects.create(alias=alias, position=0, kind="openai", model="gpt-4.1")
        AliasTarget.objects.create(alias=alias, position=1, kind="offline", model="demo")
    form = owner_client.get(_url("model_alias_edit", alias_id=alias.pk)).content.decode()
    assert 'value="gpt-4.1"' in form
    rows = [{"kind": "offline", "model": "demo"}, {"kind": "openai", "model": "gpt-4.1"}]
    assert (
        owner_client.post(_url("model_alias_edit", alias_id=alias.pk), _post(rows)).status_code
        == 302
    )
    with schema_context(world.workspace_a.schema_name):
        order = list(alias.targets.order_by("position").values_list("model", flat=True))
    assert order == ["demo", "gpt-4.1"]


def test_a_credential_of_another_provider_is_refused_beside_its_row(
    world: World, owner_client: Client, credential: ProviderCredential
) -> None:
    rows = [
        {"kind": "offline", "model": "demo"},
        {"kind": "openai", "credential": str(credential.pk), "model": "gpt-4.1"},
    ]
    response = owner_client.post(_url("model_alias_create"), _post(rows))
    assert response.status_code == 400
    formset = response.context["formset"]
    assert formset.forms[0].errors == {}
    assert "is a Anthropic credential" in str(formset.forms[1].errors["credential"])
    with schema_context(world.workspace_a.schema_name):
        assert not ModelAlias.objects.exists()


@pytest.mark.parametrize(
    ("rows", "fields", "field", "message"),
    [
        ([], {}, None, "Add at least one provider model."),
        ([{"kind": "offline", "model": "demo"}], {"name": "has:colon"}, "name", "letters, digits"),
        (
            [{"kind": "openai_compatible", "model": "llama3"}],
            {},
            "credential",
            "need a credential with their base URL",
        ),
    ],
)
def test_bad_aliases_are_refused_with_a_named_error(
    world: World,
    owner_client: Client,
    rows: list[dict[str, str]],
    fields: dict[str, str],
    field: str | None,
    message: str,
) -> None:
    response = owner_client.post(_url("model_alias_create"), _post(rows, **fields))
    assert response.status_code == 400
    assert message in response.content.decode()
    if field == "name":
        assert message in str(response.context["form"].errors["name"])
    if field == "credential":
        assert message in str(response.context["formset"].forms[0].errors["credential"])


def test_an_alias_in_use_cannot_be_deleted_or_renamed(world: World, owner_client: Client) -> None:
    with schema_context(world.workspace_a.schema_name):
        alias = ModelAlias.objects.create(name="smart")
        AliasTarget.objects.create(alias=alias, position=0, kind="offline", model="demo")
        services.agent_create(
            access=access_of(world.owner, world.workspace_a), name="Helper", model="smart"
        )
    response = owner_client.post(_url("model_alias_delete", alias_id=alias.pk), follow=True)
    assert "is used by Helper" in response.content.decode()
    renamed = owner_client.post(
        _url("model_alias_edit", alias_id=alias.pk),
        _post([{"kind": "offline", "model": "demo"}], name="clever"),
    )
    assert renamed.status_code == 400
    assert "rename is not possible" in renamed.content.decode()
    with schema_context(world.workspace_a.schema_name):
        assert ModelAlias.objects.filter(name="smart").exists()


def test_unused_alias_is_deleted(world: World, owner_client: Client) -> None:
    with schema_context(world.workspace_a.schema_name):
        alias = ModelAlias.objects.create(name="spare")
    assert owner_client.post(_url("model_alias_delete", alias_id=alias.pk)).status_code == 302
    with schema_context(world.workspace_a.schema_name):
        assert not ModelAlias.objects.exists()


def test_members_read_aliases_but_only_admins_change_them(
    world: World, member_client: Client
) -> None:
    with schema_context(world.workspace_a.schema_name):
        alias = ModelAlias.objects.create(name="smart")
    assert member_client.get(_url("model_aliases")).status_code == 200
    assert member_client.get(_url("model_alias_create")).status_code == 403
    assert member_client.post(_url("model_alias_delete", alias_id=alias.pk)).status_code == 403
    with schema_context(world.workspace_a.schema_name):
        assert ModelAlias.objects.exists()


def test_outsiders_get_404_on_every_alias_page(world: World, outsider_client: Client) -> None:
    with schema_context(world.workspace_a.schema_name):
        alias = ModelAlias.objects.create(name="smart")
    assert outsider_client.get(_url("model_aliases")).status_code == 404
    assert outsider_client.get(_url("model_alias_create")).status_code == 404
    assert outsider_client.get(_url("model_alias_edit", alias_id=alias.pk)).status_code == 404
    assert outsider_client.post(_url("model_alias_delete", alias_id=alias.pk)).status_code == 404
    # …and an id of workspace A means nothing in the outsider's own workspace.
    assert (
        outsider_client.get(_url("model_alias_edit", "bravo", alias_id=alias.pk)).status_code == 404
    )
