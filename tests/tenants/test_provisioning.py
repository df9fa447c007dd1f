from __future__ import annotations

import pytest
from django.db import DataError, connection
from django_tenants.utils import schema_context
from pgvector.django import CosineDistance

from accounts.models import User
from core.exceptions import ValidationFailed
from tenants import provisioning, services
from tenants.models import AuditEvent, Membership, Workspace
from tests.probe.models import Document, Folder

pytestmark = pytest.mark.django_db


def _migrated_workspace(slug: str) -> Workspace:
    """A workspace made the stock django-tenants way: every tenant migration run."""
    workspace = Workspace(schema_name=services.workspace_schema_name(slug), name=slug, slug=slug)
    workspace.save(verbosity=0)
    workspace.create_schema(check_if_exists=True, sync_schema=True, verbosity=0)
    return workspace


def test_cloned_workspace_is_structurally_identical_to_a_migrated_one(owner: User) -> None:
    cloned = services.workspace_create(user=owner, name="Cloned", slug="cloned-one")
    migrated = _migrated_workspace("migrated-one")

    cloned_structure = provisioning.describe_schema(cloned.schema_name)
    migrated_structure = provisioning.describe_schema(migrated.schema_name)

    assert cloned_structure["tables"] == migrated_structure["tables"]
    assert cloned_structure["columns"] == migrated_structure["columns"]
    assert cloned_structure["constraints"] == migrated_structure["constraints"]
    assert cloned_structure["indexes"] == migrated_structure["indexes"]
    # The things stock clones lose are really there.
    assert ("probe_document", "embedding", "vector(384)") in {
        (t, c, typ) for t, c, typ, *_ in cloned_structure["columns"]
    }
    assert any("hnsw" in definition for _, _, definition in cloned_structure["indexes"])


def test_clone_carries_migration_history_so_migrate_schemas_has_nothing_to_do(
    owner: User,
) -> None:
    cloned = services.workspace_create(user=owner, name="History", slug="history")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT app, name FROM {cloned.schema_name}.django_migrations")  # noqa: S608
        cloned_rows = set(cursor.fetchall())
        cursor.execute("SELECT app, name FROM ws_template.django_migrations")
        template_rows = set(cursor.fetchall())
    assert cloned_rows == template_rows
    assert ("probe", "0001_initial") in cloned_rows


def test_cloned_schema_works_for_vectors_foreign_keys_and_identity(owner: User) -> None:
    workspace = services.workspace_create(user=owner, name="Vectors", slug="vectors")
    with schema_context(workspace.schema_name):
        folder = Folder.objects.create(name="Inbox")
        near = Document.objects.create(
            folder=folder, owner=owner, title="near", embedding=[1.0] + [0.0] * 383
        )
        Document.objects.create(folder=folder, title="far", embedding=[0.0] * 383 + [1.0])
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(
                "EXPLAIN SELECT id FROM probe_document ORDER BY embedding <=> %s::vector LIMIT 1",
                [str([1.0] + [0.0] * 383)],
            )
            plan = " ".join(row[0] for row in cursor.fetchall())
        nearest = Document.objects.order_by(CosineDistance("embedding", [1.0] + [0.0] * 383))[0]
        assert nearest == near
        assert near.pk == 1  # identity sequences start afresh in each workspace
    assert "probe_doc_embedding_hnsw" in plan


def test_wrong_vector_dimension_is_refused_in_a_clone(owner: User) -> None:
    workspace = services.workspace_create(user=owner, name="Dims", slug="dims")
    with schema_context(workspace.schema_name), pytest.raises(DataError):
        Document.objects.create(title="bad", embedding=[1.0, 2.0, 3.0])


def test_failed_provisioning_leaves_no_workspace_membership_or_audit_row(owner: User) -> None:
    # An orphan schema with the target name makes the clone fail half-way.
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA ws_orphan")
    before = (Workspace.objects.count(), Membership.objects.count(), AuditEvent.objects.count())

    with pytest.raises(Exception, match="already exists"):
        services.workspace_create(user=owner, name="Orphan", slug="orphan")

    assert (
        Workspace.objects.count(),
        Membership.objects.count(),
        AuditEvent.objects.count(),
    ) == before
    assert not Workspace.objects.filter(slug="orphan").exists()


def test_workspaces_are_isolated_from_each_other(
    owner: User, workspace_a: Workspace, workspace_b: Workspace
) -> None:
    with schema_context(workspace_a.schema_name):
        Folder.objects.create(name="Only in A")
    with schema_context(workspace_b.schema_name):
        assert not Folder.objects.filter(name="Only in A").exists()
    with schema_context(workspace_a.schema_name):
        assert Folder.objects.filter(name="Only in A").exists()


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("", "Choose an address"),
        ("ab", "3–40 lowercase"),
        ("Has Spaces", "3–40 lowercase"),
        ("-leading", "3–40 lowercase"),
        ("double--hyphen", "3–40 lowercase"),
        ("x" * 41, "3–40 lowercase"),
        ("admin", "reserved"),
        ("api", "reserved"),
        ("template", "reserved"),
        ("alpha", "already taken"),
    ],
)
def test_bad_slugs_are_refused_with_a_message_naming_the_slug_field(
    owner: User, slug: str, message: str
) -> None:
    before = Workspace.objects.count()
    with pytest.raises(ValidationFailed) as excinfo:
        services.workspace_create(user=owner, name="Anything", slug=slug)
    assert message in excinfo.value.fields["slug"][0]
    assert Workspace.objects.count() == before


def test_a_blank_name_is_refused(owner: User) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        services.workspace_create(user=owner, name="  ", slug="nameless")
    assert "name" in excinfo.value.fields


def _scratch_schema(*statements: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA scratch_src")
        for statement in statements:
            cursor.execute(statement)


def test_clone_copies_table_comments() -> None:
    _scratch_schema(
        "CREATE TABLE scratch_src.notes (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY)",
        "COMMENT ON TABLE scratch_src.notes IS 'Free-form notes'",
    )
    provisioning.clone_schema("scratch_src", "scratch_dst")
    assert provisioning.describe_schema("scratch_dst")["table_comments"] == [
        ("notes", "Free-form notes")
    ]


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("CREATE TYPE scratch_src.mood AS ENUM ('ok', 'sad')", "type mood"),
        ("CREATE VIEW scratch_src.v AS SELECT 1 AS one", "view v"),
        ("CREATE SEQUENCE scratch_src.counter", "sequence counter"),
    ],
)
def test_clone_refuses_objects_it_cannot_copy_and_names_them(statement: str, named: str) -> None:
    _scratch_schema(statement)
    with pytest.raises(provisioning.ProvisioningError, match=named):
        provisioning.clone_schema("scratch_src", "scratch_dst")


def test_clone_from_inside_a_workspace_still_points_foreign_keys_at_the_clone(
    owner: User, workspace_a: Workspace
) -> None:
    with schema_context(workspace_a.schema_name):
        provisioning.clone_schema("ws_template", "ws_from_inside")
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT pg_get_constraintdef(con.oid) FROM pg_constraint con
                 JOIN pg_namespace n ON n.oid = con.connamespace
                WHERE n.nspname = 'ws_from_inside' AND con.contype = 'f'
                  AND con.conname LIKE 'probe_document_folder%%'"""
        )
        (definition,) = cursor.fetchone()
    assert "ws_from_inside.probe_folder" in definition
