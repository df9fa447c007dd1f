"""The inbox, the badge and the preferences page: a person sees and changes only their own
notifications (another person's id is a 404), and the badge costs at most one query a page."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from notifications.kinds import Kind
from notifications.models import Notification, Preference
from notifications.selectors import unread_cache_key
from notifications.services import Event, notify
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counts(world: World) -> None:
    """The personas outlive a test (their ids repeat), their cached counts must not."""
    cache.delete_many([unread_cache_key(u.pk) for u in (world.owner, world.member, world.outsider)])


ROUTES = [
    ("get", "/notifications/"),
    ("get", "/notifications/badge/"),
    ("get", "/notifications/preferences/"),
    ("post", "/notifications/preferences/"),
    ("post", "/notifications/read-all/"),
]


def _note(user: User, key: str = "k", **extra: Any) -> Notification:
    cache.delete(unread_cache_key(user.pk))  # what the commit does (no commit in these tests)
    (made,) = notify(
        user_ids=[user.pk],
        event=Event(
            kind=extra.pop("kind", Kind.RUN_FAILED),
            dedupe_key=key,
            title=extra.pop("title", "Workflow run #7 failed"),
            url=extra.pop("url", "/w/alpha/workflows/runs/7/"),
            **extra,
        ),
    )
    return made


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_anonymous_visitors_are_sent_to_sign_in(method: str, path: str) -> None:
    response = getattr(Client(), method)(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_anonymous_visitors_cannot_touch_a_notification(world: World) -> None:
    note = _note(world.owner)
    for path in (f"/notifications/{note.pk}/read/", f"/notifications/{note.pk}/open/"):
        response = Client().post(path) if path.endswith("read/") else Client().get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    note.refresh_from_db()
    assert note.read_at is None


def test_someone_else_cannot_see_open_or_mark_a_notification(world: World) -> None:
    note = _note(world.owner, title="Secret run of Alpha failed")
    for intruder in (world.outsider, world.member):
        client = _client(intruder)
        assert "Secret run" not in client.get("/notifications/").content.decode()
        assert client.post(f"/notifications/{note.pk}/read/").status_code == 404
        assert client.get(f"/notifications/{note.pk}/open/").status_code == 404
        client.post("/notifications/read-all/")
    note.refresh_from_db()
    assert note.read_at is None


def test_the_inbox_lists_unread_first_and_marks_read(world: World) -> None:
    first = _note(world.owner, "a", title="First failure")
    _note(world.owner, "b", title="Second failure")
    client = _client(world.owner)
    page = client.get("/notifications/").content.decode()
    assert "First failure" in page
    assert "Second failure" in page
    assert "Mark all read" in page
    response = client.post(f"/notifications/{first.pk}/read/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert 'id="nav-notifications"' in response.content.decode()  # the badge, out of band
    first.refresh_from_db()
    assert first.read_at is not None
    unread = client.get("/notifications/?show=unread").content.decode()
    assert "Second failure" in unread
    assert "First failure" not in unread
    client.post("/notifications/read-all/")
    assert "All caught up" in client.get("/notifications/?show=unread").content.decode()


def test_opening_a_notification_marks_it_read_and_goes_to_the_thing(world: World) -> None:
    note = _note(world.owner)
    response = _client(world.owner).get(f"/notifications/{note.pk}/open/")
    assert response.status_code == 302
    assert response["Location"] == "/w/alpha/workflows/runs/7/"
    note.refresh_from_db()
    assert note.read_at is not None


def test_a_stored_link_off_the_site_is_never_followed(world: World) -> None:
    note = _note(world.owner, url="//evil.example/")
    response = _client(world.owner).get(f"/notifications/{note.pk}/open/")
    assert response["Location"] == "/notifications/"


def test_empty_inbox(world: World) -> None:
    page = _client(world.member).get("/notifications/").content.decode()
    assert "No notifications yet" in page
    assert "Mark all read" not in page


def test_the_badge_shows_the_unread_count_on_every_page(world: World) -> None:
    client = _client(world.owner)
    _note(world.owner, "a")
    _note(world.owner, "b")
    _note(world.member, "c")
    cold = client.get("/workspaces/").content.decode()
    # nothing cached yet: the page does not count, the bell fetches its count once loaded
    assert 'hx-trigger="load, every 30s"' in cold
    assert 'aria-label="Notifications"' in cold
    badge = client.get("/notifications/badge/").content.decode()
    assert 'hx-trigger="every 30s"' in badge
    assert ">2</span>" in badge
    warm = client.get("/workspaces/").content.decode()
    assert 'aria-label="Notifications, 2 unread"' in warm
    assert 'hx-trigger="every 30s"' in warm


def test_a_page_never_queries_for_the_badge(world: World) -> None:
    _note(world.owner)
    client = _client(world.owner)
    for _ in range(2):  # a cold cache, then a warm one
        with CaptureQueriesContext(connection) as page:
            client.get("/workspaces/")
        assert not [q for q in page.captured_queries if "notifications_" in q["sql"]]
        client.get("/notifications/badge/")


def test_the_badge_costs_one_indexed_query_then_none(world: World) -> None:
    _note(world.owner)
    client = _client(world.owner)
    client.get("/notifications/badge/")  # warms the session
    cache.delete(unread_cache_key(world.owner.pk))
    with CaptureQueriesContext(connection) as miss:
        client.get("/notifications/badge/")
    with CaptureQueriesContext(connection) as hit:
        page = client.get("/notifications/badge/")
    assert ">1</span>" in page.content.decode()
    counts = [q["sql"] for q in miss.captured_queries if "notifications_notification" in q["sql"]]
    assert len(counts) == 1
    assert "COUNT(*)" in counts[0]
    assert len(miss.captured_queries) == len(hit.captured_queries) + 1
    assert not [q for q in hit.captured_queries if "notifications_" in q["sql"]]


def test_a_write_drops_the_cached_count(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    client = _client(world.owner)
    assert "unread" not in client.get("/notifications/badge/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        note = _note(world.owner)
    assert "1 unread" in client.get("/notifications/badge/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/notifications/{note.pk}/read/")
    assert "unread" not in client.get("/notifications/badge/").content.decode()


def test_preferences_are_saved_per_kind(world: World) -> None:
    client = _client(world.member)
    page = client.get("/notifications/preferences/").content.decode()
    assert "Replies to my reviews" in page
    assert 'for="id_run_failed-email"' in page
    assert "id_invitation-email" not in page  # the invitation email is always sent
    data = {f"{kind}-in_app": "on" for kind in Kind.values}
    data["approval_waiting-email"] = "on"
    response = client.post("/notifications/preferences/", data)
    assert response.status_code == 302
    chosen = {p.kind: (p.in_app, p.email) for p in Preference.objects.filter(user=world.member)}
    assert chosen[Kind.APPROVAL_WAITING] == (True, True)
    assert chosen[Kind.RUN_FAILED] == (True, False)
    assert not Preference.objects.filter(user=world.owner).exists()


def test_the_inbox_costs_the_same_queries_for_5_or_25_notifications(world: World) -> None:
    client = _client(world.owner)
    for i in range(5):
        _note(world.owner, f"first-{i}", workspace_id=world.workspace_a.pk)
    client.get("/notifications/")
    cache.delete(unread_cache_key(world.owner.pk))
    with CaptureQueriesContext(connection) as few:
        client.get("/notifications/")
    for i in range(20):
        _note(world.owner, f"more-{i}", workspace_id=world.workspace_a.pk)
    cache.delete(unread_cache_key(world.owner.pk))
    with CaptureQueriesContext(connection) as many:
        page = client.get("/notifications/")
    assert page.content.decode().count("inbox-item--unread") == 25

    def ours(queries: CaptureQueriesContext) -> list[str]:
        return [q["sql"] for q in queries.captured_queries if "notifications_" in q["sql"]]

    # the unread count, the page count and the page (workspace names joined): none per row
    assert len(ours(many)) == len(ours(few)) == 3
