"""A workflow run's page says, on each step that called a model, which provider and model
answered; answers of the offline model are labelled as placeholders."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.runs.selectors import PLACEHOLDER_NOTE
from tests.fakes import FakeOpenAI
from tests.helpers.agents import register_fake_model
from tests.helpers.personas import World, access_of
from tests.helpers.workflows import drain, make_workflow
from workflows import runs

pytestmark = pytest.mark.django_db


def _flow(model: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "inputs": {"q": {"type": "string"}},
        "steps": [
            {"id": "ask", "type": "llm", "config": {"model": model, "prompt": "{{ input.q }}"}},
            {"id": "done", "type": "transform", "config": {"value": "ok"}},
        ],
        "edges": [{"from": "ask", "to": "done"}],
    }


def _run_page(world: World, client: Client, model: str) -> str:
    with schema_context(world.workspace_a.schema_name):
        workflow = make_workflow(_flow(model), name=f"Ask {model}")
        run = runs.run_start(
            workflow=workflow,
            inputs={"q": "Summarise our refund policy"},
            trigger="manual",
            access=access_of(world.owner, world.workspace_a),
        )
        drain()
    url = reverse("workflow_run_detail", kwargs={"workspace_slug": "alpha", "run_id": run.pk})
    return client.get(url).content.decode()


def _step(html: str, node_id: str) -> str:
    return html.split(f'data-node="{node_id}"', 1)[1].split("</article>", 1)[0]


def test_offline_step_shows_provider_model_and_placeholder_label(
    world: World, owner_client: Client
) -> None:
    html = _run_page(world, owner_client, "offline:demo")
    ask = _step(html, "ask")
    assert 'data-provider="offline"' in ask
    assert "<code>demo</code>" in ask
    assert PLACEHOLDER_NOTE in ask
    assert "data-provider" not in _step(html, "done")  # no model call, nothing claimed


def test_a_real_provider_step_names_it_without_the_placeholder_label(
    world: World, owner_client: Client, fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the fake provider is on loopback
    with schema_context(world.workspace_a.schema_name):
        register_fake_model(fake_openai.base_url)
    fake_openai.queue(text="Refunds take five days.")
    ask = _step(_run_page(world, owner_client, "fake"), "ask")
    assert 'data-provider="openai_compatible"' in ask
    assert "<code>m1</code>" in ask
    assert PLACEHOLDER_NOTE not in ask
