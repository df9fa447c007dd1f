"""The archive is built by a real Celery worker process, and the erasure sweep runs there too."""

from __future__ import annotations

import zipfile

import pytest
from django.urls import reverse

from privacy import services
from privacy.models import AccountErasure, ExportJob
from privacy.tasks import build_export, erase_account
from tenants.schemas import live_workspaces
from tests.helpers.personas import PASSWORD, World, logged_in, make_user

pytestmark = pytest.mark.worker


def test_a_worker_builds_the_archive_the_page_then_serves(
    committed_world: World, worker_queue: str
) -> None:
    client = logged_in(committed_world.member)
    assert client.post(reverse("account_export")).status_code == 302
    job = ExportJob.objects.get(requested_by=committed_world.member)

    # Also sent on commit to the default queue; whichever delivery runs first builds it and the
    # other finds it done (at-least-once).
    assert build_export.apply_async(args=[job.pk], queue=worker_queue).get(timeout=120) == "ready"

    job.refresh_from_db()
    assert job.status == ExportJob.Status.READY
    response = client.get(reverse("export_download", kwargs={"export_id": job.pk}))
    assert response.status_code == 200
    path = services.export_path(job)
    assert path is not None
    assert "account/profile.json" in zipfile.ZipFile(path).namelist()


def test_a_worker_sweeps_the_workspaces_of_a_deleted_account(
    committed_world: World, worker_queue: str
) -> None:
    person = make_user("leaving@alpha.test")
    record = services.account_delete(user=person, password=PASSWORD)
    erase_account.apply_async(args=[record.pk], queue=worker_queue).get(timeout=120)
    record.refresh_from_db()
    assert record.finished_at is not None
    last = live_workspaces().order_by("-pk").first()
    assert last is not None
    assert record.swept_through_workspace_id == last.pk
    assert AccountErasure.objects.count() == 1
