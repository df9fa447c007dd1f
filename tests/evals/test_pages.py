"""Evaluation pages: upload with errors beside the field, the live evaluation page and its
polled partial, comparison, the gate setting; anonymous, outsider and viewer."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.services import agent_create, agent_update
from evals import services
from evals.models import Dataset, Evaluation, GatePolicy
from tenants.models import Membership, Role
from tenants.permissions import Access
from tests.helpers.personas import World, logged_in, make_user

pytestmark = pytest.mark.django_db


def _url(name: str, slug: str = "alpha", **kwargs: int) -> str:
    return reverse(name, kwargs={"workspace_slug": slug, **kwargs})


@pytest.fixture
def viewer_client(world: World) -> Client:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.get_or_create(
        user=viewer, workspace=world.workspace_a, defaults={"role": Role.VIEWER}
    )
    return logged_in(viewer)


@pytest.fixture
def two_evaluations(owner_access: Access) -> tuple[Evaluation, Evaluation]:
    with schema_context(owner_access.workspace.schema_name):
        dataset = services.dataset_import(
            access=owner_access,
            name="Greetings",
            filename="g.jsonl",
            data=b'{"input": "Say hello"}\n{"input": "What is 6 * 7?", "expected": "42"}\n',
        )
        suite = services.suite_create(
            access=owner_access,
            name="Hello suite",
            dataset_id=dataset.pk,
            evaluators_spec=[{"kind": "regex", "pattern": "hello"}, {"kind": "exact"}],
            pass_threshold=0,
        )
        agent = agent_create(access=owner_access, name="Greeter", model="offline:demo")
        first = services.evaluation_start(access=owner_access, suite_id=suite.pk, agent_id=agent.pk)
        services.evaluation_execute(first.pk)
        agent_update(access=owner_access, agent_id=agent.pk, system_prompt="Be kind.")
        second = services.evaluation_start(
            access=owner_access, suite_id=suite.pk, agent_id=agent.pk
        )
        services.evaluation_execute(second.pk)
        first.refresh_from_db()
        second.refresh_from_db()
    return first, second


def test_owner_uploads_a_dataset_and_sees_its_cases(world: World, owner_client: Client) -> None:
    upload = SimpleUploadedFile("cases.csv", b"input,expected\nHi,Hello\nBye,\n")
    response = owner_client.post(_url("evals_dataset_upload"), {"name": "Smoke", "file": upload})
    assert response.status_code == 302
    with schema_context(world.workspace_a.schema_name):
        Dataset.objects.get(name="Smoke")
    page = owner_client.get(response["Location"]).content.decode()
    assert "2 cases" in page
    assert "Hello" in page


def test_a_bad_upload_is_explained_beside_the_file_field(owner_client: Client) -> None:
    upload = SimpleUploadedFile("cases.jsonl", b'{"input": "ok"}\n{"question": "x"}\n')
    response = owner_client.post(_url("evals_dataset_upload"), {"name": "Bad", "file": upload})
    assert response.status_code == 400
    page = response.content.decode()
    assert "line 2: unknown field &#x27;question&#x27; (use input, expected)" in page


def test_the_evaluation_page_shows_each_case_and_polls_until_done(
    owner_client: Client, two_evaluations: tuple[Evaluation, Evaluation]
) -> None:
    first, _ = two_evaluations
    page = owner_client.get(_url("evals_evaluation", evaluation_id=first.pk)).content.decode()
    assert "Passed" in page
    assert "What is 6 * 7?" in page
    assert "✓ regex /hello/" in page
    assert "✗ exact match" in page
    assert 'hx-trigger="every 1s"' not in page  # finished: no more polling
    partial = owner_client.get(
        _url("evals_evaluation", evaluation_id=first.pk), headers={"HX-Request": "true"}
    ).content.decode()
    assert partial.lstrip().startswith('<section class="card" id="evaluation-progress"')


def test_a_running_evaluation_polls(
    world: World, owner_client: Client, owner_access: Access
) -> None:
    with schema_context(world.workspace_a.schema_name):
        dataset = services.dataset_import(
            access=owner_access, name="D", filename="d.jsonl", data=b'{"input": "x"}\n'
        )
        suite = services.suite_create(
            access=owner_access,
            name="S",
            dataset_id=dataset.pk,
            evaluators_spec=[{"kind": "exact"}],
        )
        agent = agent_create(access=owner_access, name="A", model="offline:demo")
        queued = services.evaluation_start(
            access=owner_access, suite_id=suite.pk, agent_id=agent.pk
        )
    page = owner_client.get(_url("evals_evaluation", evaluation_id=queued.pk)).content.decode()
    assert 'hx-trigger="every 1s"' in page
    assert "No case has been answered yet." in page


def test_two_versions_are_compared_side_by_side(
    owner_client: Client, two_evaluations: tuple[Evaluation, Evaluation]
) -> None:
    first, second = two_evaluations
    response = owner_client.get(_url("evals_compare"), {"left": first.pk, "right": second.pk})
    page = response.content.decode()
    assert response.status_code == 200
    assert "v1 (#" in page
    assert "v2 (#" in page
    assert page.count("Say hello") >= 3  # the input and both versions' answers


def test_an_admin_sets_the_publish_gate(world: World, owner_client: Client) -> None:
    owner_client.post(_url("evals_gates"), {"require_for_publish": "on"})
    with schema_context(world.workspace_a.schema_name):
        assert GatePolicy.objects.get().require_for_publish
    page = owner_client.get(_url("evals")).content.decode()
    assert "Agents and workflows are published only when" in page


def test_anonymous_visitors_are_sent_to_sign_in(client: Client) -> None:
    response = client.get(_url("evals"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_outsiders_see_nothing(
    outsider_client: Client, two_evaluations: tuple[Evaluation, Evaluation]
) -> None:
    first, _second = two_evaluations
    assert outsider_client.get(_url("evals")).status_code == 404
    assert outsider_client.get(_url("evals_evaluation", evaluation_id=first.pk)).status_code == 404
    # In their own workspace the id does not exist.
    own = outsider_client.get(_url("evals_evaluation", slug="bravo", evaluation_id=first.pk))
    assert own.status_code == 404


def test_viewers_read_but_cannot_upload_evaluate_or_gate(
    viewer_client: Client, two_evaluations: tuple[Evaluation, Evaluation]
) -> None:
    first, _ = two_evaluations
    assert viewer_client.get(_url("evals_evaluation", evaluation_id=first.pk)).status_code == 200
    page = viewer_client.get(_url("evals")).content.decode()
    assert "Upload a dataset" not in page
    assert "Start evaluation" not in page
    upload = SimpleUploadedFile("c.jsonl", b'{"input": "x"}\n')
    assert (
        viewer_client.post(_url("evals_dataset_upload"), {"name": "X", "file": upload}).status_code
        == 403
    )
    assert viewer_client.post(_url("evals_start"), {}).status_code == 403
    assert viewer_client.post(_url("evals_gates"), {"require_for_publish": "on"}).status_code == 403
