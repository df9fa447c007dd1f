"""The SDK and the `agentmarket` command against a live server: the whole ASGI application on
a loopback port (`asgi_live_server`) and a real Celery worker running what they start. Each
command runs in-process through `main(argv)`, and the installed script once as a subprocess;
what is asserted is what a user sees: stdout, stderr and the exit status."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from agentmarket import Client, InvalidArgument, InvalidRequest, NotFound, PermissionDenied
from agentmarket.cli import main
from django_tenants.utils import schema_context

from accounts.models import User
from marketplace import services
from marketplace.models import Category, CreatorAccount, Listing, ListingVersion
from tenants import services as tenant_services
from tests.helpers.a2a import make_agent
from tests.helpers.personas import World, access_of
from workflows import services as workflow_services
from workflows.models import Workflow

EVERYTHING = ["workspace.view", "build", "run"]
GREETING: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {"name": {"type": "string", "required": True}},
    "steps": [
        {"id": "greet", "type": "transform", "config": {"value": "Hello {{ input.name }}"}},
        {"id": "shout", "type": "transform", "config": {"value": "{{ upper(steps.greet) }}"}},
    ],
    "edges": [{"from": "greet", "to": "shout"}],
    "output": {"text": "{{ steps.shout }}"},
}
# An approval first: a run of it waits for a person, so it is still going when cancelled.
HELD: dict[str, Any] = {
    **GREETING,
    "steps": [{"id": "ask", "type": "approval", "config": {"message": "Go?"}}, *GREETING["steps"]],
    "edges": [{"from": "ask", "to": "greet", "branch": "approved"}, *GREETING["edges"]],
}
SCRIPT = Path(sys.executable).parent / "agentmarket"


@dataclass
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


def make_key(world: World, scopes: list[str], *, outsider: bool = False) -> str:
    workspace = world.workspace_b if outsider else world.workspace_a
    owner = world.outsider if outsider else world.owner
    _, secret = tenant_services.api_key_create(
        access=access_of(owner, workspace), name="cli", scopes=scopes
    )
    return secret


def make_workflow(world: World) -> Workflow:
    with schema_context(world.workspace_a.schema_name):
        return workflow_services.workflow_create(
            access=access_of(world.owner, world.workspace_a), name="Greeter", definition=GREETING
        )


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "agentmarket" / "config.json"
    monkeypatch.setenv("AGENTMARKET_CONFIG", str(path))
    monkeypatch.setenv("AGENTMARKET_POLL_INTERVAL", "0.2")
    monkeypatch.delenv("AGENTMARKET_URL", raising=False)
    monkeypatch.delenv("AGENTMARKET_API_KEY", raising=False)
    return path


@pytest.fixture
def cli(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    def run(*argv: object, stdin: str = "") -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def login(cli: Cli, server: Any, key: str) -> Result:
    result = cli("login", "--url", server.url, "--key-stdin", stdin=f"{key}\n")
    assert result.code == 0, result
    return result


# --- logging in, agents ------------------------------------------------------------------


@pytest.mark.worker
def test_login_keeps_the_key_private_and_an_agent_run_prints_its_answer(
    committed_world: World, asgi_live_server: Any, worker_queue: str, cli: Cli, config_file: Path
) -> None:
    key = make_key(committed_world, EVERYTHING)
    agent = make_agent(committed_world)

    logged_in = login(cli, asgi_live_server, key)

    prefix = "_".join(key.split("_")[:2])
    assert logged_in.out.splitlines()[0] == (
        f"Logged in to Alpha Inc (alpha) at {asgi_live_server.url} with key {prefix}_…."
    )
    assert key not in logged_in.out + logged_in.err
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert json.loads(config_file.read_text())["api_key"] == key

    listed = cli("agents", "list")
    assert listed.code == 0
    assert listed.out.split("\n")[0].split() == ["ID", "NAME", "MODEL", "CATEGORY"]
    assert listed.out.split("\n")[1].split() == [
        str(agent.pk),
        "Calculator",
        "offline:demo",
        "math",
    ]

    answered = cli("agents", "run", agent.pk, "--input", "What is 6 * 7?")
    assert answered.code == 0, answered
    assert "42" in answered.out
    progress = [line for line in answered.err.splitlines() if line.startswith("run ")]
    assert progress[-1].endswith(": succeeded")

    started = cli("agents", "run", agent.pk, "--input", "What is 2 + 3?", "--no-wait")
    assert started.code == 0
    run_id = int(started.out.split()[2])
    assert started.out.splitlines() == [
        f"Started run {run_id} of agent {agent.pk} (queued).",
        f"Watch it: agentmarket agents watch {agent.pk} {run_id}",
    ]
    watched = cli("agents", "watch", agent.pk, run_id, "--json")
    assert watched.code == 0
    assert json.loads(watched.out)["status"] == "succeeded"
    assert "5" in json.loads(watched.out)["output"]


# --- workflows ---------------------------------------------------------------------------


@pytest.mark.worker
def test_a_workflow_runs_watched_and_tailed_and_travels_through_export_and_import(
    committed_world: World, asgi_live_server: Any, worker_queue: str, cli: Cli, tmp_path: Path
) -> None:
    workflow = make_workflow(committed_world)
    login(cli, asgi_live_server, make_key(committed_world, EVERYTHING))

    listed = cli("workflows", "list")
    assert listed.out.splitlines()[1].split() == [str(workflow.pk), "Greeter", "1", "-"]

    watched = cli("workflows", "run", workflow.pk, "--input", "name=Worker", "--watch")
    assert watched.code == 0, watched
    lines = watched.out.splitlines()
    assert any(line.startswith("  step greet (transform) succeeded") for line in lines)
    assert any(line.startswith("  step shout (transform) succeeded") for line in lines)
    assert any(line.startswith("run ") and line.endswith(" succeeded") for line in lines)
    assert lines[-1] == "HELLO WORKER"

    started = cli("workflows", "run", workflow.pk, "--inputs-json", '{"name": "Tail"}')
    run_id = int(started.out.split()[2])
    assert started.out.splitlines() == [
        f"Started run {run_id} of Greeter v1 (queued).",
        f"Watch it: agentmarket runs watch {run_id}",
    ]
    tailed = cli("runs", "tail", run_id)
    assert tailed.code == 0
    assert tailed.out.splitlines()[-1] == "HELLO TAIL"
    events = [json.loads(line) for line in cli("--json", "runs", "watch", run_id).out.splitlines()]
    assert [e["step"] for e in events if e["event"] == "step"] == ["greet", "shout"]
    assert events[-1] == {
        "event": "run",
        "run": run_id,
        "status": "succeeded",
        "output": {"text": "HELLO TAIL"},
        "error": "",
    }

    exported = tmp_path / "greeter.yaml"
    wrote = cli("workflows", "export", workflow.pk, "-o", exported)
    assert wrote.code == 0
    assert wrote.err.strip() == f"Wrote workflow {workflow.pk} as yaml to {exported}."
    document = yaml.safe_load(exported.read_text())
    assert [step["id"] for step in document["steps"]] == ["greet", "shout"]

    imported = cli("workflows", "import", exported, "--name", "Greeter copy")
    assert imported.code == 0, imported
    copy_id = int(imported.out.split()[2])
    assert imported.out.strip() == (
        f"Imported workflow {copy_id} 'Greeter copy' (active version 1)."
    )
    as_json = json.loads(cli("workflows", "export", copy_id, "--format", "json").out)
    assert as_json["steps"] == document["steps"]


def test_a_run_is_cancelled_from_the_command_line(
    committed_world: World, asgi_live_server: Any, cli: Cli
) -> None:
    """A run that waits (for an approval, or in the queue when no worker is up) is stopped by
    `runs cancel`."""
    with schema_context(committed_world.workspace_a.schema_name):
        workflow = workflow_services.workflow_create(
            access=access_of(committed_world.owner, committed_world.workspace_a),
            name="Greeter",
            definition=HELD,
        )
    login(cli, asgi_live_server, make_key(committed_world, EVERYTHING))
    started = cli("workflows", "run", workflow.pk, "--input", "name=Never")
    run_id = int(started.out.split()[2])

    cancelled = cli("runs", "cancel", run_id)

    assert cancelled.code == 0, cancelled
    assert cancelled.out.strip() == f"Run {run_id} of Greeter v1 is cancelled."
    assert cli("runs", "show", run_id).out.splitlines()[0] == (
        f"run {run_id} of Greeter v1: cancelled"
    )
    again = cli("runs", "cancel", run_id)
    assert (again.code, again.out) == (1, "")
    assert again.err == "agentmarket: This run has already ended. (HTTP 409)\n"
    missing = cli("runs", "cancel", 999999)
    assert missing.code == 1
    assert "No workflow run with that id" in missing.err


# --- the marketplace ---------------------------------------------------------------------


def test_publishing_a_listing_submits_it_for_review_and_lists_it_pending(
    committed_world: World, asgi_live_server: Any, cli: Cli
) -> None:
    Category.objects.create(slug="support", name="Customer support")
    agent = make_agent(committed_world)
    login(cli, asgi_live_server, make_key(committed_world, EVERYTHING))
    publish = (
        "listings", "publish", "--kind", "agent", "--id", agent.pk, "--title", "Calculator",
        "--summary", "Does sums.", "--tag", "math", "--example", "What is 2 + 2?",
    )  # fmt: skip

    refused = cli(*publish, "--category", "nope")
    assert refused.code == 1
    assert refused.out == ""
    assert len(refused.err.splitlines()) == 1
    assert "(category: " in refused.err
    assert refused.err.endswith("(HTTP 400)\n")

    submitted = cli(*publish, "--category", "support")
    assert submitted.code == 0, submitted
    assert submitted.out.splitlines()[0] == (
        "Submitted calculator version 1 for review (pending, free)."
    )

    listed = cli("listings", "list")
    assert listed.out.splitlines()[1].split() == [
        "calculator", "agent", "Calculator", "no", "v1", "pending", "-",
    ]  # fmt: skip


def test_a_price_is_set_from_the_command_line_and_kept_by_a_version_sent_without_one(
    committed_world: World, asgi_live_server: Any, cli: Cli
) -> None:
    Category.objects.create(slug="support", name="Customer support")
    agent = make_agent(committed_world)
    publisher = services.publisher_get_or_create(
        access=access_of(committed_world.owner, committed_world.workspace_a)
    )
    CreatorAccount.objects.create(
        publisher=publisher,
        stripe_account_id="acct_clionboarded",
        details_submitted=True,
        transfers_active=True,
        payouts_enabled=True,
    )
    staff = User.objects.create_superuser(email="mod@platform.test", password="x")
    login(cli, asgi_live_server, make_key(committed_world, EVERYTHING))
    publish = (
        "listings", "publish", "--kind", "agent", "--id", agent.pk, "--title", "Calculator",
        "--summary", "Does sums.", "--category", "support",
    )  # fmt: skip

    # checked before anything is sent: exit 2, the flag and the problem
    for flags, error in [
        (("--pricing", "one_time", "--price", "abc"), "price: 'abc' is not an amount in dollars"),
        (("--pricing", "one_time", "--price", "9.999"), "price: '9.999' has more than two"),
        (("--pricing", "free", "--price", "5"), "price: a free version has no price"),
    ]:
        refused = cli(*publish, *flags)
        assert (refused.code, refused.out) == (2, ""), refused
        assert refused.err.startswith(f"agentmarket: {error}"), refused.err
    bad_model = cli(*publish, "--pricing", "yearly")
    assert bad_model.code == 2
    assert "invalid choice: 'yearly'" in bad_model.err
    # the server's bounds come back naming the field
    too_cheap = cli(*publish, "--pricing", "monthly", "--price", "0.10")
    assert too_cheap.code == 1
    assert "The price is at least $0.50" in too_cheap.err
    assert not ListingVersion.objects.exists()

    paid = cli(*publish, "--pricing", "one_time", "--price", "9.00")
    assert paid.code == 0, paid
    assert paid.out.splitlines()[0] == (
        "Submitted calculator version 1 for review (pending, $9.00 one-time)."
    )
    services.version_approve(user=staff, version=ListingVersion.objects.get(number=1))

    # a new version without --pricing keeps the listing's price
    kept = cli(*publish, "--changelog", "Faster.")
    assert kept.code == 0, kept
    assert "(pending, $9.00 one-time)" in kept.out
    assert (ListingVersion.objects.get(number=2).pricing, Listing.objects.get().pricing) == (
        "one_time",
        "one_time",
    )
    # and --pricing free makes it free
    assert "(pending, free)" in cli(*publish, "--pricing", "free").out

    with Client(asgi_live_server.url, make_key(committed_world, EVERYTHING)) as client:
        with pytest.raises(InvalidArgument, match="more than two decimals"):
            client.publish_listing(
                kind="agent", source_id=agent.pk, title="Calculator", summary="Does sums.",
                category="support", pricing="per_run", price="0.255",
            )  # fmt: skip
        version = client.publish_listing(
            kind="agent", source_id=agent.pk, title="Calculator", summary="Does sums.",
            category="support", pricing="per_run", price=Decimal("0.25"),
        )  # fmt: skip
        assert (version.pricing, version.price_cents) == ("per_run", 25)
    assert ListingVersion.objects.count() == 4


# --- errors ------------------------------------------------------------------------------


def test_errors_are_one_line_with_the_reason_and_a_nonzero_status(
    committed_world: World, asgi_live_server: Any, cli: Cli, config_file: Path
) -> None:
    agent = make_agent(committed_world)
    workflow = make_workflow(committed_world)

    not_logged_in = cli("agents", "list")
    assert (not_logged_in.code, not_logged_in.out) == (2, "")
    assert not_logged_in.err.startswith("agentmarket: Not logged in: run `agentmarket login")

    bad_key = cli("login", "--url", asgi_live_server.url, "--key-stdin", stdin="amk_00000000_no\n")
    assert bad_key.code == 1
    assert "Check the key, or log in again with `agentmarket login`. (HTTP 401)" in bad_key.err
    assert "amk_00000000_no" not in bad_key.err
    assert not config_file.exists()

    login(cli, asgi_live_server, make_key(committed_world, EVERYTHING, outsider=True))
    elsewhere = cli("agents", "run", agent.pk, "--input", "What is 6 * 7?")
    assert elsewhere.code == 1
    assert elsewhere.err == (
        f"agentmarket: Agent {agent.pk}: No active agent with that id in this workspace. "
        "(HTTP 404)\n"
    )

    login(cli, asgi_live_server, make_key(committed_world, ["workspace.view"]))
    viewer = cli("agents", "run", agent.pk, "--input", "What is 6 * 7?")
    assert viewer.code == 1
    assert viewer.err == (
        "agentmarket: Your access to this workspace does not allow 'run'. (HTTP 403)\n"
    )

    login(cli, asgi_live_server, make_key(committed_world, EVERYTHING))
    invalid = cli("workflows", "run", workflow.pk, "--input", "nam=typo")
    assert invalid.code == 1
    assert invalid.err == (
        "agentmarket: The run's inputs are not valid: name: required (a string). (HTTP 400)\n"
    )

    usage = cli("agents", "run", "seven", "--input", "x")
    assert usage.code == 2
    assert "invalid int value: 'seven'" in usage.err
    bad_input = cli("workflows", "run", workflow.pk, "--input", "no-equals-sign")
    assert bad_input.code == 2
    assert bad_input.err == (
        "agentmarket: --input takes name=value (or name:=JSON), not 'no-equals-sign'.\n"
    )


# --- the installed script ----------------------------------------------------------------


@pytest.mark.worker
def test_the_installed_command_logs_in_lists_and_runs_as_a_subprocess(
    committed_world: World, asgi_live_server: Any, worker_queue: str, config_file: Path
) -> None:
    agent = make_agent(committed_world)
    key = make_key(committed_world, EVERYTHING)

    def agentmarket(*argv: object, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *map(str, argv)], input=stdin, capture_output=True, text=True, timeout=120
        )

    logged_in = agentmarket("login", "--url", asgi_live_server.url, "--key-stdin", stdin=key)
    assert logged_in.returncode == 0, logged_in.stderr
    assert logged_in.stdout.startswith("Logged in to Alpha Inc (alpha)")

    listed = agentmarket("--json", "agents", "list")
    assert [a["name"] for a in json.loads(listed.stdout)] == ["Calculator"]

    answered = agentmarket("agents", "run", agent.pk, "--input", "What is 6 * 7?")
    assert answered.returncode == 0, answered.stderr
    assert "42" in answered.stdout

    missing = agentmarket("agents", "run", 999999, "--input", "x")
    assert missing.returncode == 1
    assert (
        missing.stderr
        == "agentmarket: Agent 999999: No active agent with that id in this workspace. (HTTP 404)\n"
    )
    assert key not in missing.stderr + answered.stdout + answered.stderr


# --- the Python client -------------------------------------------------------------------


@pytest.mark.worker
def test_the_client_pages_runs_and_raises_the_apis_errors(
    committed_world: World, asgi_live_server: Any, worker_queue: str
) -> None:
    agents = [make_agent(committed_world, name=f"Calc {i}") for i in range(3)]
    workflow = make_workflow(committed_world)

    with Client(asgi_live_server.url, make_key(committed_world, EVERYTHING)) as client:
        first = client.list_agents(limit=2)
        assert (first.count, len(first.results), first.next_offset) == (3, 2, 2)
        assert [a.name for a in client.iter_agents(page_size=2)] == [a.name for a in agents]

        run = client.run_agent(agents[0].pk, "What is 6 * 7?", interval=0.2)
        assert run.status == "succeeded"
        assert "42" in run.output

        with pytest.raises(NotFound):
            client.get_agent(999999)
        with pytest.raises(InvalidRequest) as invalid:
            client.start_workflow_run(workflow.pk, {})
        assert invalid.value.fields
        assert "name" in str(invalid.value)

        started = client.start_workflow_run(workflow.pk, {"name": "Sdk"})
        events = list(client.watch_workflow_run(started.id, interval=0.2))
        assert events[-1].kind == "run"
        assert events[-1].run.output == {"text": "HELLO SDK"}
        assert [s.status for s in events[-1].run.steps] == ["succeeded", "succeeded"]

    narrow = Client(asgi_live_server.url, make_key(committed_world, ["run"]))
    with pytest.raises(PermissionDenied, match=r"does not allow 'workspace\.view'"):
        narrow.workspace()


@pytest.mark.worker
def test_a_failed_run_exits_1_with_its_error_and_the_account_commands(
    committed_world: World, asgi_live_server: Any, worker_queue: str, cli: Cli, config_file: Path
) -> None:
    with schema_context(committed_world.workspace_a.schema_name):
        broken = workflow_services.workflow_create(
            access=access_of(committed_world.owner, committed_world.workspace_a),
            name="Broken",
            definition={
                "schema_version": 1,
                "steps": [{"id": "bad", "type": "transform", "config": {"value": "{{ 1 / 0 }}"}}],
                "edges": [],
                "output": {"text": "{{ steps.bad }}"},
            },
        )
    key = make_key(committed_world, EVERYTHING)
    login(cli, asgi_live_server, key)

    failed = cli("workflows", "run", broken.pk, "--watch")
    assert failed.code == 1
    assert any(line.startswith("  step bad (transform) failed") for line in failed.out.splitlines())
    run_id = int(failed.out.splitlines()[-1].split()[1])
    assert failed.out.splitlines()[-1] == f"run {run_id} failed"
    assert failed.err.startswith(f"agentmarket: Run {run_id} failed: ")
    assert "division by zero" in failed.err

    shown = cli("runs", "show", run_id)
    assert shown.code == 0
    assert shown.out.splitlines()[0] == f"run {run_id} of Broken v1: failed"
    assert shown.out.splitlines()[2].split()[:4] == ["bad", "transform", "failed", "1"]

    who = cli("whoami")
    prefix = "_".join(key.split("_")[:2])
    assert who.out == f"Alpha Inc (alpha) at {asgi_live_server.url}, key {prefix}_…\n"

    assert cli("logout").out == f"Removed {config_file}.\n"
    assert not config_file.exists()
    assert cli("whoami").code == 2
