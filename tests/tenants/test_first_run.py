"""A new workspace with no model provider: a banner on every workspace page and a first-run
checklist on its overview (add a provider key, check it, point `default` at a real model);
both go away step by step as the owner does them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.models import ProviderCredential
from tests.fakes import FakeOpenAI
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db
BANNER = 'data-banner="no-provider"'
CHECKLIST = 'data-checklist="first-run"'


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def _url(name: str, **kwargs: int) -> str:
    return reverse(name, kwargs={"workspace_slug": "alpha", **kwargs})


def _page(client: Client, name: str = "workspace_dashboard") -> str:
    response = client.get(_url(name))
    assert response.status_code == 200
    return response.content.decode()


def _done(html: str, step: str) -> bool:
    return f'data-step="{step}" data-done="true"' in html


def test_banner_and_checklist_until_a_real_provider_answers_by_default(
    world: World, owner_client: Client, fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the fake provider is on loopback

    # given a workspace with no provider: the banner is on every page, the checklist all to do
    home = _page(owner_client)
    assert BANNER in home
    assert "placeholder text" in home
    assert BANNER in _page(owner_client, "agent_list")
    assert CHECKLIST in home
    assert "0 of 3 done" in home
    assert not any(_done(home, step) for step in ("provider", "check", "alias"))

    # when the owner adds a provider key, the banner goes and step 1 is done
    added = owner_client.post(
        _url("providers"),
        {"name": "Local vLLM", "kind": "openai_compatible", "base_url": fake_openai.base_url},
    )
    assert added.status_code == 302
    home = _page(owner_client)
    assert BANNER not in home
    assert BANNER not in _page(owner_client, "agent_list")
    assert _done(home, "provider")
    assert not _done(home, "check")
    assert "1 of 3 done" in home

    # when the connection check succeeds, step 2 is done
    with schema_context(world.workspace_a.schema_name):
        credential = ProviderCredential.objects.get(name="Local vLLM")
    fake_openai.queue(text="p")
    owner_client.post(_url("provider_check", credential_id=credential.pk), {"model": "m1"})
    assert _done(_page(owner_client), "check")

    # when `default` points at that model, the checklist is gone
    saved = owner_client.post(
        _url("model_alias_create"),
        {
            "name": "default",
            "description": "",
            "targets-TOTAL_FORMS": "1",
            "targets-INITIAL_FORMS": "0",
            "targets-MIN_NUM_FORMS": "0",
            "targets-MAX_NUM_FORMS": "5",
            "targets-0-kind": "openai_compatible",
            "targets-0-model": "m1",
            "targets-0-credential": str(credential.pk),
        },
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert CHECKLIST not in _page(owner_client)


def test_members_see_the_banner_without_the_admin_links(
    world: World, member_client: Client
) -> None:
    home = _page(member_client)
    assert BANNER in home
    assert "Ask an owner or admin" in home
    assert _url("providers") not in home
    assert "An owner or admin of this workspace does these steps." in home


def test_a_platform_key_counts_as_a_provider(
    world: World, owner_client: Client, settings: Any
) -> None:
    settings.LLM_PLATFORM_KEYS = {"anthropic": "sk-ant-platform", "openai": ""}
    home = _page(owner_client)
    assert BANNER not in home
    assert _done(home, "provider")
