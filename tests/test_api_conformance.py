"""Property-based conformance of the whole REST API with its OpenAPI document (schemathesis).

Every operation of the schema the app serves is called with generated data, valid and invalid,
as workspace alpha's owner through an API key with every scope, against the real WSGI app,
PostgreSQL and Redis. Every response goes through all of schemathesis' checks: no server
error, a documented status code, a documented content type and headers, a body matching the
response schema, invalid data rejected, valid data accepted, and auth not ignored.

Bounded so it stays a few minutes on two cores: a fixed number of examples per operation,
derandomized (the same cases on every run; a failure reproduces), no deadline (a shared CI
machine is slow at times; timing is not what this checks). Runs start no network work: in a
test transaction the after-commit enqueue never happens, and the platform has no provider key.

Path ids are mostly random (so mostly 404); half of the positive ones are replaced with ids of
real objects of alpha (`REAL_IDS`), so the success answers are checked too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from agents import services as agents_services
from marketplace import earnings
from marketplace.models import Payout
from tenants import services as tenant_services
from tenants.models import Membership, Role
from tenants.permissions import API_KEY_SCOPES
from tenants.schemas import activate, activate_public
from tests.helpers.money import make_purchase, make_shop
from tests.helpers.personas import World, access_of
from workflows import library, runs
from workflows.library import prepare
from workflows.models import WorkflowRun

pytestmark = pytest.mark.django_db

SCHEMA_PATH = "/api/schema/?format=json"
PUBLIC_ADDRESS = "93.184.215.14"  # a public address; nothing ever connects to it
MAX_EXAMPLES = 25
REAL_IDS: dict[str, list[Any]] = {}


@pytest.fixture(autouse=True)
def _requests_keep_the_test_connection() -> Iterator[None]:
    # A real WSGI request would close the test's connection when it ends (Django's test client
    # does the same disconnect): the whole run stays inside the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _names_resolve_without_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Callback URLs are checked by resolving their host. Generated hosts (`0.com`) would ask
    real DNS servers: at the network edge, every name resolves to one public address."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in (None, "localhost") or _is_ip(host):
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_ADDRESS, port or 443))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _is_ip(host: Any) -> bool:
    try:
        ipaddress.ip_address(str(host).strip("[]"))
    except ValueError:
        return False
    return True


@pytest.fixture
def real_objects(world: World) -> Iterator[None]:
    """Objects of alpha whose ids replace half of the generated ids (`_real_ids` below)."""
    access = access_of(world.owner, world.workspace_a)
    activate(world.workspace_a)
    try:
        agent = agents_services.agent_create(access=access, name="Conformance", model="offline:x")
        agent_run = agents_services.agent_run_start(access=access, agent_id=agent.pk, input="hi")
        template = library.templates()[0]
        workflow = prepare.workflow_from_template(access=access, key=template.key)
        run = runs.run_start(
            workflow=workflow,
            inputs=dict(template.example_inputs or {}),
            trigger=WorkflowRun.TriggerKind.API,
            access=access,
        )
        invitation, _ = tenant_services.invitation_create(
            access=access, email="invitee@conformance.test", role=Role.MEMBER
        )
        _publisher_with_a_sale(world)
        REAL_IDS.update(
            {
                "agent": [agent.pk],
                "agent_run": [agent_run.pk],
                "workflow": [workflow.pk],
                "workflow_run": [run.pk],
                "step": list(run.steps.values_list("pk", flat=True)),
                "member": list(
                    Membership.objects.filter(workspace=world.workspace_a).values_list(
                        "pk", flat=True
                    )
                ),
                "invitation": [invitation.pk],
                "template": [t.key for t in library.templates()],
            }
        )
    finally:
        activate_public()
    yield
    REAL_IDS.clear()


def _publisher_with_a_sale(world: World) -> None:
    """Alpha sold its paid listing and was paid out once: the earnings and payouts endpoints
    answer 200 with rows, so their success bodies are checked against the schema too."""
    shop = make_shop(workspace=world.workspace_a)
    purchase = make_purchase(shop, buyer=world.workspace_b)
    earnings.sale_record(
        purchase=purchase,
        gross_cents=2500,
        stripe_ref="ch_conformance",
        occurred_at=timezone.now(),
    )
    Payout.objects.create(
        creator=shop.creator,
        period=timezone.now().date().isoformat(),
        amount_cents=2000,
        status=Payout.Status.PAID,
        stripe_transfer_id="tr_conformance",
        paid_at=timezone.now(),
    )


def _kind(path: str, name: str) -> str | None:
    """Which objects a path parameter names (api-keys stay random: revoking the caller's own
    key would end the run)."""
    if name == "key":
        return "template"
    if name == "step_id":
        return "step"
    if name == "run_id":
        return "agent_run" if path.startswith("/api/v1/agents/") else "workflow_run"
    if name == "id":
        for prefix, kind in (
            ("/api/v1/agents/", "agent"),
            ("/api/v1/workflows/", "workflow"),
            ("/api/v1/members/", "member"),
            ("/api/v1/invitations/", "invitation"),
        ):
            if path.startswith(prefix):
                return kind
    return None


def map_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Half of the valid generated ids (even numbers, even-length keys) become ids of real
    objects, deterministically. An invalid value is left alone: a negative case stays one."""
    if not REAL_IDS or context.operation is None or not path_parameters:
        return path_parameters
    mapped = dict(path_parameters)
    for name, value in path_parameters.items():
        real = REAL_IDS.get(_kind(context.operation.path, name) or "")
        if not real:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            if value % 2 == 0:
                mapped[name] = real[value % len(real)]
        elif isinstance(value, str) and name == "key" and value and len(value) % 2 == 0:
            mapped[name] = real[len(value) % len(real)]
    return mapped


@pytest.fixture
def api_key(world: World, settings: Any, real_objects: None) -> str:
    # Every call of a run comes from one address: failed-auth counting is not under test here
    # (ignored_auth sends wrong keys on purpose), so its window is widened for this test.
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**rates, "auth_failure": "100000/min", "api_key": "100000/min"},
    }
    _, secret = tenant_services.api_key_create(
        access=access_of(world.owner, world.workspace_a),
        name="conformance",
        scopes=list(API_KEY_SCOPES),
    )
    return secret


# Requests the document calls valid that the API may still refuse with a 400 naming the field,
# because the rule depends on data or on more than one field, which JSON Schema cannot say.
# For these operations (only), a 400 is an expected answer to a schema-valid request.
SEMANTIC_400 = {
    "v1_agents_create": "`model` must name a model alias of the workspace or a known model",
    "v1_agents_partial_update": "the same `model` rule; `tools` must name existing tools",
    "v1_agents_runs_create": "`callback_url` must pass Django's URL validator and be public",
    "workflow_runs_start": "`inputs` are checked against the definition; `callback_url` as above",
    "workflows_create": "`definition` is checked by the workflow validator (steps, edges)",
    "workflow_versions_create": "the same definition check",
    "workflow_versions_step_test": "`sample` must be {input, steps}; the step must be testable",
    "workflows_import": "`document` must parse as JSON or YAML holding a valid definition",
    "workflow_templates_instantiate": "a given `name` must not be another workflow's name",
    "marketplace_listings_publish": "`category` must exist; `source_id` must be publishable",
    "evals_datasets_upload": "`content` must parse as the CSV or JSONL `filename` names",
    "evals_suites_create": "each evaluator spec is checked by kind; `dataset` must exist",
    "evals_evaluations_start": "exactly one of `agent` and `workflow`",
    "runs_list_all": "`date_to` must not be before `date_from`",
    "workflow_runs_list": "the same date rule",
}
EXPECTED_FOR_VALID = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-operation-id": list(SEMANTIC_400),
                "checks": {"positive_data_acceptance": {"expected-statuses": EXPECTED_FOR_VALID}},
            }
        ]
    }
)

# Loaded from the app itself, as a client would (no database needed for it).
schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, WSGIHandler(), config=CONFIG)
schema.hook(map_path_parameters)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_schema(case: Any, api_key: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"})
