"""`manage.py import_workflows FILE.csv`: one row per step, all or nothing across the file,
errors named by row and column, a dry run that writes nothing."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import schema_context

from tenants.models import Workspace
from workflows.models import Workflow

pytestmark = pytest.mark.django_db

HEADER = [
    "workflow",
    "description",
    "category",
    "inputs",
    "step_id",
    "type",
    "name",
    "model",
    "prompt",
    "expression",
    "config",
    "next",
    "max_attempts",
]


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header)
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def triage_rows(name: str = "Ticket triage") -> list[dict[str, str]]:
    return [
        {
            "workflow": name,
            "description": "Classify and answer tickets",
            "category": "Support",
            "inputs": "ticket, customer?",
            "step_id": "classify",
            "type": "LLM prompt",
            "name": "Classify",
            "model": "default",
            "prompt": "Is this urgent? {{ input.ticket }}",
            "config": '{"output_schema": {"type": "object", '
            '"properties": {"urgent": {"type": "boolean"}}}}',
            "next": "is_urgent",
            "max_attempts": "3",
        },
        {
            "workflow": name,
            "step_id": "is_urgent",
            "type": "condition",
            "expression": "steps.classify.data.urgent",
            "next": "true:page | false:reply",
        },
        {
            "workflow": name,
            "step_id": "page",
            "type": "transform",
            "config": '{"value": "Page on-call: {{ input.ticket }}"}',
        },
        {
            "workflow": name,
            "step_id": "reply",
            "type": "llm",
            "model": "default",
            "prompt": "Reply kindly to {{ default(input.customer, 'the customer') }}",
        },
    ]


def batch_rows() -> list[dict[str, str]]:
    """A second workflow running the first as a sub-workflow, once per ticket."""
    return [
        {
            "workflow": "Batch triage",
            "inputs": '{"tickets": {"type": "array", "required": true}}',
            "step_id": "each",
            "type": "map",
            "config": '{"items": "input.tickets", "concurrency": 2, "node": {"type": '
            '"sub_workflow", "config": {"workflow": "Ticket triage", '
            '"inputs": {"ticket": "{{ item }}"}}}}',
        }
    ]


def run(path: Path, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_workflows", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def workflows_in(workspace: Workspace) -> list[Workflow]:
    with schema_context(workspace.schema_name):
        return list(Workflow.objects.select_related("active_version").order_by("pk"))


def test_a_good_file_creates_each_workflow_with_its_steps_and_edges(
    tmp_path: Path, workspace_a: Workspace, owner
) -> None:
    path = write_csv(tmp_path / "flows.csv", triage_rows() + batch_rows())

    out, _ = run(path, "--workspace", "alpha")

    assert "Imported 2 workflow(s), 5 step(s) into “alpha”" in out
    triage, batch = workflows_in(workspace_a)
    assert (triage.name, triage.description, triage.category) == (
        "Ticket triage",
        "Classify and answer tickets",
        "Support",
    )
    version = triage.active_version
    assert version.number == 1
    assert version.source == "import"
    assert version.note == "Imported from flows.csv"
    assert version.created_by_id == owner.pk
    definition = version.definition
    assert definition["inputs"] == {
        "ticket": {"type": "string", "required": True},
        "customer": {"type": "string", "required": False},
    }
    steps = {s["id"]: s for s in definition["steps"]}
    assert [s["id"] for s in definition["steps"]] == ["classify", "is_urgent", "page", "reply"]
    assert steps["classify"]["type"] == "llm"
    assert steps["classify"]["retry"] == {"max_attempts": 3}
    assert steps["classify"]["config"]["prompt"] == "Is this urgent? {{ input.ticket }}"
    assert steps["classify"]["config"]["output_schema"]["properties"]["urgent"]
    assert definition["edges"] == [
        {"from": "classify", "to": "is_urgent"},
        {"from": "is_urgent", "to": "page", "branch": "true"},
        {"from": "is_urgent", "to": "reply", "branch": "false"},
    ]
    assert batch.active_version.definition["steps"][0]["config"]["node"]["type"] == "sub_workflow"


def test_bad_rows_are_reported_by_row_and_column_and_nothing_is_written(
    tmp_path: Path, workspace_a: Workspace
) -> None:
    rows = triage_rows()
    rows[0]["config"] = '{"output_schema": '  # row 2
    rows[1]["next"] = "true:page | false:replyy"  # row 3
    rows[3]["prompt"] = "Reply to {{ input.custmer }}"  # row 5
    rows[2]["model"] = "default"  # row 4: a transform has no model
    path = write_csv(tmp_path / "bad.csv", rows + batch_rows())

    with pytest.raises(CommandError, match=r"problem\(s\) in bad.csv; nothing was imported"):
        run(path, "--workspace", "alpha")

    assert workflows_in(workspace_a) == []  # not even "Batch triage", which had no problem


def test_the_error_report_names_each_row_and_column(tmp_path: Path, workspace_a) -> None:
    rows = triage_rows()
    rows[0]["config"] = '{"output_schema": '
    rows[1]["next"] = "true:page | false:replyy"
    rows[3]["prompt"] = "Reply to {{ input.custmer }}"
    rows[2]["model"] = "default"
    path = write_csv(tmp_path / "bad.csv", rows)
    err = io.StringIO()

    with pytest.raises(CommandError):
        call_command(
            "import_workflows", str(path), workspace="alpha", stdout=io.StringIO(), stderr=err
        )

    report = err.getvalue()
    assert "bad.csv: row 2, column config: is not valid JSON" in report
    assert "row 3, column next: edges[2].to: there is no step 'replyy'" in report
    assert "row 4, column model: does not apply to a transform step" in report
    assert "row 5, column prompt: steps[3] (reply).config.prompt: reads input.custmer" in report


def test_a_name_taken_in_the_workspace_fails_the_whole_file(
    tmp_path: Path, workspace_a: Workspace
) -> None:
    path = write_csv(tmp_path / "flows.csv", triage_rows())
    run(path, "--workspace", "alpha")
    again = write_csv(tmp_path / "again.csv", triage_rows("Other triage") + triage_rows())
    err = io.StringIO()

    with pytest.raises(CommandError):
        call_command(
            "import_workflows", str(again), workspace="alpha", stdout=io.StringIO(), stderr=err
        )

    assert "row 6, column workflow: Another workflow is already named" in err.getvalue()
    assert [w.name for w in workflows_in(workspace_a)] == ["Ticket triage"]


def test_a_dry_run_checks_everything_and_writes_nothing(
    tmp_path: Path, workspace_a: Workspace
) -> None:
    path = write_csv(tmp_path / "flows.csv", triage_rows() + batch_rows())

    out, _ = run(path, "--workspace", "alpha", "--dry-run")

    assert "Dry run: 2 workflow(s), 5 step(s) would be imported" in out
    assert "nothing was written" in out
    assert workflows_in(workspace_a) == []


def test_a_dry_run_reports_errors_too(tmp_path: Path, workspace_a: Workspace) -> None:
    rows = triage_rows()
    rows[1]["type"] = "decision"
    err = io.StringIO()
    path = write_csv(tmp_path / "flows.csv", rows)

    with pytest.raises(CommandError):
        call_command(
            "import_workflows",
            str(path),
            workspace="alpha",
            dry_run=True,
            stdout=io.StringIO(),
            stderr=err,
        )

    assert "row 3, column type: steps[1] (is_urgent).type: unknown step type" in err.getvalue()


def test_semicolons_and_a_byte_order_mark_as_spreadsheets_save_them(
    tmp_path: Path, workspace_a: Workspace
) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        b"\xef\xbb\xbfWorkflow;Step ID;Type;Model;Prompt\n"
        b"Greeter;hello;llm;default;Say hello to the team\n"
    )

    out, _ = run(path, "--workspace", "alpha")

    assert "Imported 1 workflow(s), 1 step(s)" in out
    (greeter,) = workflows_in(workspace_a)
    assert greeter.active_version.definition["steps"][0]["config"]["prompt"] == (
        "Say hello to the team"
    )


def test_a_missing_file_is_a_clear_error(tmp_path: Path, workspace_a: Workspace) -> None:
    with pytest.raises(CommandError, match=r"nope.csv: no such file"):
        run(tmp_path / "nope.csv", "--workspace", "alpha")


def test_a_wrong_header_names_the_missing_and_unknown_columns(
    tmp_path: Path, workspace_a: Workspace
) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("flow,step_id,kind\nA,a,llm\n")

    with pytest.raises(CommandError) as caught:
        run(path, "--workspace", "alpha")

    message = str(caught.value)
    assert "wrong.csv: The header row (row 1) does not fit" in message
    assert "missing column(s): workflow, type" in message
    assert "unknown column(s): flow, kind" in message


def test_an_empty_file_and_a_binary_file_are_refused(
    tmp_path: Path, workspace_a: Workspace
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CommandError, match="The file is empty"):
        run(empty, "--workspace", "alpha")
    binary = tmp_path / "sheet.xlsx"
    binary.write_bytes(b"PK\x03\x04\xff\xfe")
    with pytest.raises(CommandError, match="not UTF-8"):
        run(binary, "--workspace", "alpha")


def test_the_workspace_and_the_user_must_exist(
    tmp_path: Path, workspace_a: Workspace, workspace_b: Workspace
) -> None:
    path = write_csv(tmp_path / "flows.csv", triage_rows())
    with pytest.raises(CommandError, match="no workspace with slug 'nope'"):
        run(path, "--workspace", "nope")
    with pytest.raises(CommandError, match="name the workspace to import into"):
        run(path)
    with pytest.raises(CommandError, match=r"outsider@bravo\.test is not a member of “alpha”"):
        run(path, "--workspace", "alpha", "--user", "outsider@bravo.test")
    assert workflows_in(workspace_a) == []
    assert workflows_in(workspace_b) == []


def test_a_member_can_import_as_themselves(tmp_path: Path, workspace_a: Workspace, member) -> None:
    path = write_csv(tmp_path / "flows.csv", triage_rows())

    run(path, "--workspace", "alpha", "--user", "member@alpha.test")

    (workflow,) = workflows_in(workspace_a)
    assert workflow.created_by_id == member.pk


def test_the_example_in_the_docs_imports(tmp_path: Path, workspace_a: Workspace) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "workflow-templates.md"
    example = docs.read_text().split("```csv\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.csv"
    path.write_text(example)

    out, _ = run(path, "--workspace", "alpha")

    assert "Imported 1 workflow(s), 4 step(s)" in out
    (workflow,) = workflows_in(workspace_a)
    assert workflow.name == "Ticket triage"
