"""The platform catalogue and its importer: the shipped catalogue imports cleanly, re-imports
are idempotent, changes become new versions, dry runs write nothing, bad items are reported
with file and field while good ones land, CSV works, and the command's exit status."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from marketplace.catalog_import import (
    CATALOG_DIR,
    ImportReport,
    catalog_tools,
    import_catalog,
    workflow_structure_issues,
)
from marketplace.models import Category, Listing, ListingVersion, Publisher

pytestmark = pytest.mark.django_db


def _agent(slug: str, **overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "slug": slug,
        "kind": "agent",
        "title": f"Agent {slug}",
        "summary": "A test agent.",
        "description": "Does **one** thing.",
        "category": "writing",
        "tags": ["test"],
        "icon": "🧪",
        "providers": ["offline"],
        "pricing": "free",
        "price_cents": 0,
        "changelog": "First.",
        "example_inputs": [{"message": "hi"}],
        "definition": {
            "agent": {
                "name": f"Agent {slug}",
                "description": "",
                "category": "Writing",
                "model": "default",
                "system_prompt": "Be helpful.",
                "temperature": 0.2,
                "max_tokens": 500,
                "tools": ["calculator"],
                "memory_mode": "none",
                "memory_turns": 10,
                "max_tool_calls": 4,
                "max_cost_per_run_usd": None,
                "blocked_patterns": [],
                "output_schema": None,
                "cache_enabled": False,
            }
        },
    }
    item.update(overrides)
    return item


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    (root / "writing").mkdir(parents=True)
    shutil.copy(CATALOG_DIR / "categories.yaml", root / "categories.yaml")
    for slug in ("alpha-agent", "beta-agent"):
        _write(root, slug, _agent(slug))
    return root


def _write(root: Path, slug: str, data: dict[str, Any] | str) -> Path:
    path = root / "writing" / f"{slug}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True))
    return path


def _errors(report: ImportReport) -> set[tuple[str, str]]:
    return {(e.source, e.field) for e in report.errors}


# --- the shipped catalogue -------------------------------------------------------------------


def test_shipped_catalogue_imports_cleanly() -> None:
    report = import_catalog(CATALOG_DIR)

    assert report.errors == []
    assert len(report.created) >= 60
    assert Category.objects.count() >= 15
    publisher = Publisher.objects.get(slug="agent-market")
    assert publisher.verified
    assert publisher.workspace_id is None
    listings = Listing.objects.select_related("current_version")
    assert listings.filter(publisher=publisher).count() == len(report.created)
    kinds = {kind: listings.filter(kind=kind).count() for kind in Listing.Kind.values}
    assert kinds["agent"] >= 40
    assert kinds["workflow"] >= 15
    assert listings.values("category").distinct().count() >= 15
    # Catalogue listings are free: the platform publisher has no payouts account to be paid.
    assert not listings.exclude(pricing="free").exists()
    assert not ListingVersion.objects.exclude(pricing="free").exists()
    tools = catalog_tools()
    for listing in listings:
        version = listing.current_version
        assert version is not None
        assert version.number == 1
        assert version.status == ListingVersion.Status.APPROVED
        assert len(listing.summary) <= 200
        definition = version.definition
        if listing.kind == "agent":
            specs = [definition["agent"]]
        else:
            assert workflow_structure_issues(definition["workflow"]) == [], listing.slug
            specs = definition["agents"]
        for spec in specs:
            assert spec["model"] == "default"
            assert set(spec["tools"]) <= tools, listing.slug
        assert set(version.required_tools) <= tools


def test_shipped_catalogue_reimport_is_idempotent() -> None:
    import_catalog(CATALOG_DIR)
    versions = ListingVersion.objects.count()

    report = import_catalog(CATALOG_DIR)

    assert report.errors == []
    assert report.created == []
    assert report.updated == []
    assert len(report.unchanged) >= 60
    assert ListingVersion.objects.count() == versions


# --- versions and dry runs --------------------------------------------------------------------


def test_changed_definition_creates_version_2_and_leaves_others_alone(folder: Path) -> None:
    import_catalog(folder)
    changed = _agent("alpha-agent", changelog="Sharper prompt.")
    changed["definition"]["agent"]["system_prompt"] = "Be helpful and brief."
    _write(folder, "alpha-agent", changed)

    report = import_catalog(folder)

    assert report.updated == ["alpha-agent"]
    assert report.unchanged == ["beta-agent"]
    alpha = Listing.objects.get(slug="alpha-agent")
    assert alpha.current_version is not None
    assert alpha.current_version.number == 2
    assert alpha.current_version.changelog == "Sharper prompt."
    assert alpha.current_version.definition["agent"]["system_prompt"] == "Be helpful and brief."
    assert Listing.objects.get(slug="beta-agent").versions.count() == 1


def test_metadata_change_updates_in_place(folder: Path) -> None:
    import_catalog(folder)
    _write(folder, "beta-agent", _agent("beta-agent", title="Beta, renamed"))

    report = import_catalog(folder)

    assert report.updated == ["beta-agent"]
    beta = Listing.objects.get(slug="beta-agent")
    assert beta.title == "Beta, renamed"
    assert beta.versions.count() == 1


def test_dry_run_writes_nothing(folder: Path) -> None:
    report = import_catalog(folder, dry_run=True)

    assert report.dry_run
    assert sorted(report.created) == ["alpha-agent", "beta-agent"]
    assert not Listing.objects.exists()
    assert not Publisher.objects.filter(slug="agent-market").exists()
    assert not Category.objects.filter(slug="writing").exists()


def test_dry_run_after_import_reports_unchanged(folder: Path) -> None:
    import_catalog(folder)
    versions = ListingVersion.objects.count()

    report = import_catalog(folder, dry_run=True)

    assert sorted(report.unchanged) == ["alpha-agent", "beta-agent"]
    assert ListingVersion.objects.count() == versions


# --- bad items ---------------------------------------------------------------------------------


def test_bad_items_are_reported_and_good_ones_imported(folder: Path) -> None:
    no_title = _agent("no-title")
    del no_title["title"]
    _write(folder, "no-title", no_title)
    _write(folder, "odd-category", _agent("odd-category", category="astrology"))
    _write(folder, "bad-kind", _agent("bad-kind", kind="plugin"))
    _write(folder, "broken", "slug: broken\ntitle: [unclosed\n")
    _write(folder, "priced-free", _agent("priced-free", pricing="free", price_cents=500))
    _write(folder, "paid", _agent("paid", pricing="one_time", price_cents=1900))
    bad_tool = _agent("bad-tool")
    bad_tool["definition"]["agent"]["tools"] = ["knowledge_search", "teleport"]
    _write(folder, "bad-tool", bad_tool)

    report = import_catalog(folder)

    assert sorted(report.created) == ["alpha-agent", "beta-agent"]
    assert {
        ("writing/no-title.yaml", "title"),
        ("writing/odd-category.yaml", "category"),
        ("writing/bad-kind.yaml", "kind"),
        ("writing/broken.yaml", "file"),
        ("writing/priced-free.yaml", "price_cents"),
        ("writing/paid.yaml", "pricing"),
        ("writing/bad-tool.yaml", "definition.agent.tools"),
    } <= _errors(report)
    assert len(report.failed) == 7
    (paid,) = [e for e in report.errors if e.source == "writing/paid.yaml"]
    assert str(paid) == (
        "writing/paid.yaml: pricing: catalogue listings are free: the platform publisher has "
        "no payouts account (not 'one_time')"
    )
    assert sorted(Listing.objects.values_list("slug", flat=True)) == ["alpha-agent", "beta-agent"]


def test_workflow_items_are_validated(folder: Path) -> None:
    step = {"id": "ask", "type": "agent", "config": {"agent": "Nobody", "prompt": "hi"}}
    workflow = {"schema_version": 1, "steps": [step], "edges": []}
    item = _agent("flow", kind="workflow", definition={"workflow": workflow, "agents": []})
    _write(folder, "flow", item)
    cyclic = {
        "schema_version": 1,
        "steps": [
            {"id": "a", "type": "llm", "config": {"model": "default", "prompt": "x"}},
            {"id": "b", "type": "llm", "config": {"model": "default", "prompt": "y"}},
        ],
        "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}],
    }
    _write(
        folder,
        "cycle",
        _agent("cycle", kind="workflow", definition={"workflow": cyclic, "agents": []}),
    )

    report = import_catalog(folder)

    fields = _errors(report)
    assert ("writing/flow.yaml", "definition.workflow.steps[0] (ask).config.agent") in fields
    assert ("writing/cycle.yaml", "definition.workflow") in fields
    assert sorted(report.created) == ["alpha-agent", "beta-agent"]


def test_duplicate_slug_is_an_error(folder: Path) -> None:
    _write(folder, "zz-copy", _agent("alpha-agent"))

    report = import_catalog(folder)

    assert ("writing/zz-copy.yaml", "slug") in _errors(report)


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_import(tmp_path: Path) -> None:
    shutil.copy(CATALOG_DIR / "categories.yaml", tmp_path / "categories.yaml")
    path = tmp_path / "listings.csv"
    good = _agent("csv-agent", pricing="free", price_cents=0)
    columns = list(good)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in (good, _agent("csv-bad", category="nowhere")):
            writer.writerow(
                {
                    k: json.dumps(v)
                    if k in ("definition", "example_inputs")
                    else "|".join(v)
                    if isinstance(v, list)
                    else v
                    for k, v in row.items()
                }
            )

    report = import_catalog(path)

    assert report.created == ["csv-agent"]
    assert _errors(report) == {("listings.csv row 3", "category")}
    listing = Listing.objects.get(slug="csv-agent")
    assert listing.pricing == "free"
    assert listing.tags == ["test"]
    assert listing.current_version is not None
    assert listing.current_version.required_tools == ["calculator"]


# --- the command -------------------------------------------------------------------------------


def test_command_success(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("import_catalog", str(folder))

    out = capsys.readouterr().out
    assert "2 created, 0 updated, 0 unchanged, 0 failed" in out
    assert Listing.objects.count() == 2


def test_command_dry_run(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("import_catalog", str(folder), "--dry-run")

    assert "Nothing was written" in capsys.readouterr().out
    assert not Listing.objects.exists()


def test_command_fails_with_status_1(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(folder, "odd-category", _agent("odd-category", category="astrology"))

    with pytest.raises(CommandError) as raised:
        call_command("import_catalog", str(folder))

    assert raised.value.returncode == 1
    err = capsys.readouterr().err
    assert "writing/odd-category.yaml: category: unknown category 'astrology'" in err
    assert Listing.objects.count() == 2
