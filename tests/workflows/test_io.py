"""Export and import: documents in JSON and YAML that import back to the same definition,
syntax errors that name the line and column, and the limits on what is read."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from core.exceptions import PermissionDenied, ValidationFailed
from tenants.models import Membership, Role
from tenants.permissions import Access
from tests.helpers.personas import World, access_of, make_user
from workflows import io, services
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db

DEFINITION: dict[str, Any] = {
    "schema_version": 1,
    "inputs": {
        "ticket": {"type": "string", "required": True, "description": "The customer's message"}
    },
    "steps": [
        {
            "id": "classify",
            "type": "llm",
            "name": "Classify",
            "config": {
                "model": "offline:demo",
                "system": "You sort tickets.\nAnswer in JSON.\n",
                "prompt": "Classify: {{ input.ticket }}",
                "output_schema": {
                    "type": "object",
                    "properties": {"urgent": {"type": "boolean"}},
                },
            },
            "retry": {"max_attempts": 3, "backoff_seconds": 2},
            "timeout_seconds": 120,
        },
        {
            "id": "is_urgent",
            "type": "condition",
            "config": {"expression": "steps.classify.data.urgent"},
        },
        {"id": "page", "type": "transform", "config": {"value": ["ünïcode ✓", 1.5, None, True]}},
        {"id": "reply", "type": "transform", "config": {"value": "  padded\n\ttabbed  \n\n"}},
    ],
    "edges": [
        {"from": "classify", "to": "is_urgent"},
        {"from": "is_urgent", "to": "page", "branch": "true"},
        {"from": "is_urgent", "to": "reply", "branch": "false"},
    ],
    "output": {"answer": "{{ steps.reply }}"},
}


@pytest.fixture
def workflow(in_alpha: None, owner_access: Access) -> Workflow:
    return services.workflow_create(
        access=owner_access,
        name="Ticket triage",
        description="Pages on-call for outages.",
        category="Support",
        definition=DEFINITION,
    )


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_export_then_import_round_trips_the_definition_and_details(
    workflow: Workflow, owner_access: Access, fmt: str
) -> None:
    text = io.export_definition(workflow, fmt)
    assert io.parse_document(text, fmt) == DEFINITION
    assert io.parse_document(text) == DEFINITION  # the format is recognised without a hint

    services.workflow_archive(access=owner_access, workflow=workflow)  # frees the name
    imported = io.import_document(access=owner_access, text=text, fmt=fmt)
    version = imported.versions.get()
    assert (imported.name, imported.description, imported.category) == (
        "Ticket triage",
        "Pages on-call for outages.",
        "Support",
    )
    assert version.source == WorkflowVersion.Source.IMPORT
    assert version.definition == DEFINITION
    renamed = io.import_document(access=owner_access, text=text, fmt=fmt, name="Copy")
    assert renamed.name == "Copy"


def test_the_exported_document_is_readable_and_stable(workflow: Workflow) -> None:
    text = io.export_definition(workflow, "json")
    document = json.loads(text)
    assert list(document)[:6] == [
        "format",
        "name",
        "description",
        "category",
        "schema_version",
        "inputs",
    ]
    assert document["format"] == io.FORMAT
    assert list(document["steps"][0]) == [
        "id",
        "type",
        "name",
        "config",
        "retry",
        "timeout_seconds",
    ]
    assert text == io.export_definition(workflow.versions.get(), "json")  # same text every time

    yaml_text = io.export_definition(workflow, "yaml")
    assert yaml_text.startswith("format: agentmarket.workflow/v1\nname: Ticket triage\n")
    assert "system: |\n" in yaml_text  # multi-line prompts read as blocks
    assert (
        yaml.safe_load(yaml_text)["steps"][0]["config"]["system"]
        == "You sort tickets.\nAnswer in JSON.\n"
    )


def test_export_of_a_version_uses_that_version(workflow: Workflow, owner_access: Access) -> None:
    changed = json.loads(json.dumps(DEFINITION))
    changed["steps"][3]["config"]["value"] = "second"
    v2 = services.version_save(access=owner_access, workflow=workflow, definition=changed)
    assert io.parse_document(io.export_definition(workflow, "json")) == DEFINITION  # active: v1
    assert io.parse_document(io.export_definition(v2, "yaml")) == changed
    with pytest.raises(ValidationFailed) as excinfo:
        io.export_definition(workflow, "xml")
    assert "format" in excinfo.value.fields


def test_a_bare_or_nested_definition_is_accepted() -> None:
    assert io.parse_document(json.dumps(DEFINITION), "json") == DEFINITION
    nested = {"format": io.FORMAT, "name": "X", "definition": DEFINITION}
    assert io.parse_document(yaml.safe_dump(nested), "yaml") == DEFINITION
    document = io.parse(json.dumps({"name": " Named ", **DEFINITION}))
    assert document.name == "Named"
    assert document.definition == DEFINITION


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        ('{\n  "steps": [\n    oops\n  ]\n}', "json", "line 3, column 5: Expecting value"),
        ('{"steps": [1,]}', None, "line 1, column 14"),
        ("schema_version: 1\nsteps:\n  - id: a\n   type: x\n", "yaml", "line 4, column 4"),
        ("steps: [1, 2\n", "yaml", "line 2, column 1"),
        ('{"a": NaN}', "json", "NaN is not a JSON number"),
        ("[1, 2]", "json", "must be an object"),
        ("just words", "yaml", "must be an object"),
        ("   \n", None, "The document is empty."),
        ("when: 2024-01-02\n", "yaml", "when: date values are not JSON (quote it)"),
        ("steps:\n  1: x\n", "yaml", "steps: the key 1 must be text (quote it)"),
        ("a: &x [1]\nb: *x\n", "yaml", "uses an alias"),
        ('{"format": "other/v9"}', "json", "Unknown document format 'other/v9'"),
        ('{"name": 5}', "json", "The document's name must be text."),
    ],
)
def test_unreadable_documents_say_where_and_why(text: str, fmt: str | None, expected: str) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        io.parse_document(text, fmt)
    assert expected in " ".join(excinfo.value.fields["document"])
    assert expected.split(":")[0] in excinfo.value.message


def test_documents_over_the_size_limit_are_refused_before_parsing() -> None:
    text = json.dumps({**DEFINITION, "output": {"big": "x" * io.MAX_BYTES}})
    with pytest.raises(ValidationFailed, match="the limit is 1,000,000 bytes"):
        io.parse_document(text, "json")
    with pytest.raises(ValidationFailed, match="the limit is"):
        io.parse_document(text.encode(), None)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        io.parse_document("{}", "toml")
    assert excinfo.value.fields == {"format": ["Use the format json or yaml, not 'toml'."]}


def test_import_validates_the_definition_and_needs_build(
    in_alpha: None, owner_access: Access, world: World
) -> None:
    broken = {**DEFINITION, "edges": [{"from": "classify", "to": "nowhere"}]}
    with pytest.raises(ValidationFailed) as excinfo:
        io.import_document(access=owner_access, text=json.dumps(broken), fmt=None, name="Bad")
    assert "edges[0].to: there is no step 'nowhere'" in excinfo.value.fields["definition"]
    with pytest.raises(ValidationFailed) as excinfo:
        io.import_document(access=owner_access, text=json.dumps(DEFINITION), fmt="json")
    assert "name" in excinfo.value.fields  # a bare definition has no name: one must be given

    viewer = make_user("viewer@alpha.test")
    Membership.objects.get_or_create(
        user=viewer, workspace=world.workspace_a, defaults={"role": Role.VIEWER}
    )
    with pytest.raises(PermissionDenied):
        io.import_document(
            access=access_of(viewer, world.workspace_a),
            text=json.dumps(DEFINITION),
            fmt="json",
            name="Sneaky",
        )
    assert not Workflow.objects.exists()
