"""The Outbound access page: owners and admins keep the list of hosts the http_request tool may
reach; bad entries are refused beside the `host` field; changes are audited; members get 403
and people of other workspaces 404."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.models import AllowedHost
from agents.outbound.services import HOST_ADDED, HOST_REMOVED
from tenants.models import AuditEvent
from tests.helpers.personas import World

pytestmark = pytest.mark.django_db


def _url(slug: str = "alpha") -> str:
    return reverse("outbound_hosts", kwargs={"workspace_slug": slug})


def _remove_url(host_id: int, slug: str = "alpha") -> str:
    return reverse("outbound_host_remove", kwargs={"workspace_slug": slug, "host_id": host_id})


def _hosts(world: World, slug: str = "alpha") -> list[str]:
    workspace = world.workspace_a if slug == "alpha" else world.workspace_b
    with schema_context(workspace.schema_name):
        return list(AllowedHost.objects.values_list("host", flat=True))


def test_empty_list_explains_that_every_url_is_refused(owner_client: Client) -> None:
    response = owner_client.get(_url())
    html = response.content.decode()
    assert response.status_code == 200
    assert "refuses every URL" in html
    assert 'href="/w/alpha/outbound/"' in html  # the sidenav link
    assert "Outbound access" in html


def test_owner_adds_hosts_in_canonical_form_and_sees_them_listed(
    world: World, owner_client: Client
) -> None:
    for entry in ("API.Example.com.", "*.Docs.Example.org", "bücher.example", "1.1.1.1"):
        response = owner_client.post(_url(), {"host": entry})
        assert response.status_code == 302, response.content.decode()
    assert sorted(_hosts(world)) == [
        "*.docs.example.org",
        "1.1.1.1",
        "api.example.com",
        "xn--bcher-kva.example",
    ]
    page = owner_client.get(_url()).content.decode()
    assert "api.example.com" in page
    assert "subdomains" in page
    assert "owner@alpha.test" in page


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("", "This field is required"),
        ("https://api.example.com", "no http://"),
        ("api.example.com/v1", "no http://"),
        ("api.example.com:8443", "Leave out the port"),
        ("user@api.example.com", "no http://"),
        ("*", "only allowed at the start"),
        ("*.com", "not *.com"),
        ("api.*.example.com", "only allowed at the start"),
        ("exa mple.com", "no http://"),
        ("-bad-.example.com", "not a valid host name"),
        ("127.0.0.1", "private, loopback or reserved"),
        ("10.1.2.3", "private, loopback or reserved"),
        ("169.254.169.254", "private, loopback or reserved"),
        ("[::1]", "private, loopback or reserved"),
        ("localhost", "localhost is this server"),
        ("*.10.0.0.1", "needs a domain name"),
    ],
)
def test_bad_entries_are_refused_beside_the_host_field(
    world: World, owner_client: Client, entry: str, message: str
) -> None:
    response = owner_client.post(_url(), {"host": entry})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == ["host"]
    assert message in str(errors["host"])
    assert _hosts(world) == []


def test_a_duplicate_is_refused_by_name(world: World, owner_client: Client) -> None:
    owner_client.post(_url(), {"host": "api.example.com"})
    response = owner_client.post(_url(), {"host": "API.example.com"})
    assert response.status_code == 400
    assert "already on the list" in str(response.context["form"].errors["host"])


def test_adding_and_removing_are_audited_and_removal_takes_effect(
    world: World, owner_client: Client
) -> None:
    owner_client.post(_url(), {"host": "api.example.com"})
    with schema_context(world.workspace_a.schema_name):
        host = AllowedHost.objects.get()
    response = owner_client.post(_remove_url(host.pk), follow=True)
    assert "api.example.com removed" in response.content.decode()
    assert _hosts(world) == []
    events = list(
        AuditEvent.objects.filter(workspace=world.workspace_a)
        .order_by("id")
        .values_list("action", "target_label", "actor_label")
    )
    assert events[-2:] == [
        (HOST_ADDED, "api.example.com", "owner@alpha.test"),
        (HOST_REMOVED, "api.example.com", "owner@alpha.test"),
    ]


def test_members_get_403_and_the_list_is_unchanged(world: World, member_client: Client) -> None:
    with schema_context(world.workspace_a.schema_name):
        host = AllowedHost.objects.create(host="api.example.com")
    assert member_client.get(_url()).status_code == 403
    assert member_client.post(_url(), {"host": "evil.example"}).status_code == 403
    assert member_client.post(_remove_url(host.pk)).status_code == 403
    assert _hosts(world) == ["api.example.com"]


def test_outsiders_get_404_and_cannot_touch_another_workspace(
    world: World, outsider_client: Client
) -> None:
    with schema_context(world.workspace_a.schema_name):
        host = AllowedHost.objects.create(host="api.example.com")
    assert outsider_client.get(_url()).status_code == 404
    assert outsider_client.post(_url(), {"host": "evil.example"}).status_code == 404
    assert outsider_client.post(_remove_url(host.pk)).status_code == 404
    # Their own workspace's page works, and the id of A's entry means nothing there.
    assert outsider_client.get(_url("bravo")).status_code == 200
    assert outsider_client.post(_remove_url(host.pk, "bravo")).status_code == 404
    assert _hosts(world) == ["api.example.com"]
    assert _hosts(world, "bravo") == []


def test_private_addresses_may_be_listed_when_the_operator_allows_private_networks(
    world: World, owner_client: Client, settings
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    assert owner_client.post(_url(), {"host": "10.1.2.3"}).status_code == 302
    assert owner_client.post(_url(), {"host": "ollama"}).status_code == 302
    assert sorted(_hosts(world)) == ["10.1.2.3", "ollama"]


def test_the_page_reads_a_fixed_number_of_queries(
    world: World, owner_client: Client, django_assert_max_num_queries
) -> None:
    with schema_context(world.workspace_a.schema_name):
        AllowedHost.objects.bulk_create(
            AllowedHost(host=f"h{i}.example.com", created_by_id=world.owner.pk) for i in range(30)
        )
    owner_client.get(_url())
    with django_assert_max_num_queries(16):
        response = owner_client.get(_url())
    assert len(response.context["hosts"]) == 30
