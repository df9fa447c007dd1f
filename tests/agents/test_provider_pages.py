from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.models import AliasTarget, ModelAlias, ProviderCredential
from tests.fakes import FakeAnthropic
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db
KEY = "sk-ant-api03-VERYSECRETVALUE-9xQz"


def _url(name: str, slug: str = "alpha", **kwargs: int) -> str:
    return reverse(name, kwargs={"workspace_slug": slug, **kwargs})


@pytest.fixture
def loopback_allowed(settings) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the fake provider lives on 127.0.0.1


def _add(client: Client, **fields: str):
    return client.post(_url("providers"), {"name": "Prod", "kind": "anthropic", **fields})


def test_key_is_saved_encrypted_and_only_its_last_four_are_shown(
    world: World, owner_client: Client
) -> None:
    assert _add(owner_client, api_key=KEY).status_code == 302
    page = owner_client.get(_url("providers")).content.decode()
    with schema_context(world.workspace_a.schema_name):
        stored = ProviderCredential.objects.get(name="Prod")
    assert "VERYSECRET" not in page
    assert "••••9xQz" in page
    assert "VERYSECRET" not in stored.api_key_encrypted
    assert stored.api_key() == KEY


def test_check_connection_reports_success_and_failure(
    world: World, owner_client: Client, fake_anthropic: FakeAnthropic, loopback_allowed: None
) -> None:
    assert _add(owner_client, api_key=KEY, base_url=fake_anthropic.base_url).status_code == 302
    with schema_context(world.workspace_a.schema_name):
        credential = ProviderCredential.objects.get(name="Prod")
    fake_anthropic.queue(text="p")
    ok = owner_client.post(
        _url("provider_check", credential_id=credential.pk),
        {"model": "claude-haiku-4-5"},
        HTTP_HX_REQUEST="true",
    )
    assert "Connected: claude-haiku-4-5 answered" in ok.content.decode()
    assert fake_anthropic.last_request.api_key == KEY
    assert fake_anthropic.last_request.body["max_tokens"] == 1

    fake_anthropic.queue_error(401, message="invalid x-api-key")
    bad = owner_client.post(
        _url("provider_check", credential_id=credential.pk), {"model": "claude-haiku-4-5"}
    )
    assert "401" in bad.content.decode()
    assert "invalid x-api-key" in bad.content.decode()


def test_bad_input_names_the_field(owner_client: Client) -> None:
    response = _add(owner_client, api_key="")
    assert response.status_code == 400
    assert "api_key" in response.context["form"].errors
    response = owner_client.post(_url("providers"), {"name": "Local", "kind": "openai_compatible"})
    assert "base_url" in response.context["form"].errors


def test_a_refused_form_keeps_everything_typed_including_the_key(owner_client: Client) -> None:
    response = owner_client.post(
        _url("providers"),
        {
            "name": "Typed",
            "kind": "openai_compatible",
            "base_url": "http://169.254.169.254/v1",
            "api_key": KEY,
        },
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert 'value="Typed"' in page
    assert 'value="http://169.254.169.254/v1"' in page
    assert f'value="{KEY}"' in page
    assert "base_url" in response.context["form"].errors


def test_internal_base_urls_are_refused_unless_the_operator_allows_them(
    owner_client: Client,
) -> None:
    response = owner_client.post(
        _url("providers"),
        {
            "name": "Sneaky",
            "kind": "openai_compatible",
            "base_url": "http://169.254.169.254/v1",
        },
    )
    assert response.status_code == 400
    assert "private or reserved" in str(response.context["form"].errors["base_url"])


def test_a_credential_used_by_an_alias_cannot_be_removed(
    world: World, owner_client: Client
) -> None:
    _add(owner_client, api_key=KEY)
    with schema_context(world.workspace_a.schema_name):
        credential = ProviderCredential.objects.get(name="Prod")
        alias = ModelAlias.objects.create(name="smart")
        AliasTarget.objects.create(
            alias=alias, position=0, kind="anthropic", model="m", credential=credential
        )
    response = owner_client.post(_url("provider_delete", credential_id=credential.pk), follow=True)
    assert "used by a model alias" in response.content.decode()
    with schema_context(world.workspace_a.schema_name):
        assert ProviderCredential.objects.filter(pk=credential.pk).exists()


def test_members_get_403_and_outsiders_404(
    world: World, owner_client: Client, member_client: Client, outsider_client: Client
) -> None:
    _add(owner_client, api_key=KEY)
    with schema_context(world.workspace_a.schema_name):
        credential = ProviderCredential.objects.get(name="Prod")
    assert member_client.get(_url("providers")).status_code == 403
    assert (
        member_client.post(_url("provider_delete", credential_id=credential.pk)).status_code == 403
    )
    for method, url in [
        ("get", _url("providers")),
        ("post", _url("providers")),
        ("post", _url("provider_delete", credential_id=credential.pk)),
        ("post", _url("provider_check", credential_id=credential.pk)),
    ]:
        assert getattr(outsider_client, method)(url, {"model": "x"}).status_code == 404, url
    assert (
        outsider_client.post(
            _url("provider_check", slug="bravo", credential_id=credential.pk), {"model": "x"}
        ).status_code
        == 404
    )
