"""The code step inside workflows: a run executes it on the engine like any other step and its
output feeds the next step (a map may run it per item); the builder's side panel edits it, and
saving code with a syntax error names the step, the field and the line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from tests.helpers.personas import World, access_of
from tests.helpers.workflows import drain, flow, start, step, transform
from workflows import services
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
TOTALS = """\
import statistics

def main(inputs):
    amounts = [row["amount"] for row in inputs["rows"]]
    return {"total": sum(amounts), "mean": statistics.mean(amounts)}
"""


def code(step_id: str, source: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"id": step_id, "type": "code", "config": {"code": source, "inputs": inputs}}


def test_a_code_step_runs_on_the_engine_and_feeds_the_next_step(in_alpha: None) -> None:
    run = start(
        flow(
            [
                transform("rows", "{{ input.rows }}"),
                code("totals", TOTALS, {"rows": "{{ steps.rows }}"}),
                transform("say", "Total {{ steps.totals.total }}, mean {{ steps.totals.mean }}"),
            ],
            [("rows", "totals"), ("totals", "say")],
            inputs={"rows": {"type": "array", "required": True}},
            output={"text": "{{ steps.say }}", "totals": "{{ steps.totals }}"},
        ),
        {"rows": [{"amount": 4}, {"amount": 8}]},
    )
    assert drain() == ["rows", "totals", "say"]
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.output == {"text": "Total 12, mean 6", "totals": {"total": 12, "mean": 6}}
    totals = step(run, "totals")
    assert totals.output == {"total": 12, "mean": 6}


def test_a_failing_code_step_fails_the_run_with_the_users_line(in_alpha: None) -> None:
    run = start(
        flow(
            [code("totals", TOTALS, {"rows": [{"amount": 1}, {"cost": 2}]})],
            [],
        )
    )
    drain()
    run.refresh_from_db()
    assert run.status == "failed"
    assert step(run, "totals").error == "Code step 'totals': KeyError: 'amount' (line 4)"
    assert run.error == "totals: Code step 'totals': KeyError: 'amount' (line 4)"


def test_a_map_runs_a_code_body_per_item(in_alpha: None) -> None:
    body = {
        "type": "code",
        "config": {
            "code": "def main(inputs):\n    return inputs['n'] ** 2\n",
            "inputs": {"n": "{{ item }}"},
        },
    }
    run = start(
        flow(
            [{"id": "squares", "type": "map", "config": {"items": "[1, 2, 3]", "node": body}}],
            [],
        )
    )
    drain()
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert step(run, "squares").output == [1, 4, 9]


# --- the builder's side panel ------------------------------------------------------------------


def _url(name: str, **kwargs: Any) -> str:
    return reverse(name, kwargs={"workspace_slug": "alpha", **kwargs})


@pytest.fixture
def workflow(world: World) -> Workflow:
    with schema_context(world.workspace_a.schema_name):
        return services.workflow_create(
            access=access_of(world.owner, world.workspace_a),
            name="Totals",
            definition=flow(
                [transform("rows", "{{ input }}"), code("totals", TOTALS, {"rows": "[]"})],
                [("rows", "totals")],
            ),
        )


def _post(source: str, base: int, **extra: Any) -> dict[str, Any]:
    return {
        "base": base,
        "id": "totals",
        "name": "",
        "cfg_code": source,
        "cfg_inputs": json.dumps({"rows": "{{ steps.rows }}"}),
        **extra,
    }


def test_the_panel_edits_the_code_in_a_labelled_monospace_textarea(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    panel = owner_client.get(_url("workflow_detail", workflow_id=workflow.pk) + "?step=totals")
    form = panel.context["forms"]["step"]
    field = form["cfg_code"]
    assert field.label == "Python code"
    assert "main(inputs)" in field.help_text
    assert "statistics" in field.help_text
    html = panel.content.decode()
    assert 'name="cfg_code"' in html
    assert 'class="mono"' in str(field)
    assert "statistics.mean" in str(field)
    assert "main(inputs) receives it rendered" in form["cfg_inputs"].help_text

    url = _url("workflow_step_save", workflow_id=workflow.pk, step_id="totals")
    changed = TOTALS.replace('"mean"', '"average"')
    response = owner_client.post(url, _post(changed, base=1), **HX)
    assert response.status_code == 200
    with schema_context(world.workspace_a.schema_name):
        latest = WorkflowVersion.objects.filter(workflow=workflow).order_by("number").last()
        assert latest is not None
        config = latest.definition["steps"][1]["config"]
    assert config == {"code": changed, "inputs": {"rows": "{{ steps.rows }}"}}


def test_saving_a_syntax_error_names_the_step_field_and_line(
    world: World, owner_client: Client, workflow: Workflow
) -> None:
    url = _url("workflow_step_save", workflow_id=workflow.pk, step_id="totals")
    broken = "def main(inputs):\n    return {'total': 1\n"
    response = owner_client.post(url, _post(broken, base=1, action="publish"), **HX)
    assert response.status_code == 400
    errors = " ".join(response.context["forms"]["step"].errors["cfg_code"])
    assert "line 2" in errors, errors
    assert "Nothing was saved" in response.content.decode()

    response = owner_client.post(url, _post(broken, base=1), **HX)  # kept as a draft
    assert "cannot be published or run" in response.content.decode()
    page = owner_client.get(_url("workflow_detail", workflow_id=workflow.pk) + "?step=totals")
    errors = " ".join(page.context["forms"]["step"].errors["cfg_code"])
    assert "line 2" in errors, errors
