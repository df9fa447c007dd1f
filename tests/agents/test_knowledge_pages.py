"""Knowledge pages: list with an empty state, create, upload with errors beside the field,
live progress (the documents panel polls only while something is processing), try a search,
delete with confirmation, retry; outsiders get 404 everywhere, viewers 403 on writes."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_tenants.utils import schema_context

from agents import services as agent_services
from agents.knowledge import services
from agents.knowledge.demo import seed_demo_knowledge
from agents.models import KnowledgeBase, KnowledgeDocument
from tenants.models import Membership, Role
from tests.helpers.personas import World, access_of, logged_in, make_user

pytestmark = pytest.mark.django_db


def _url(name: str, slug: str = "alpha", **kwargs: int) -> str:
    return reverse(name, kwargs={"workspace_slug": slug, **kwargs})


@pytest.fixture
def base(world: World) -> KnowledgeBase:
    with schema_context(world.workspace_a.schema_name):
        return seed_demo_knowledge()


def _document(world: World, base: KnowledgeBase, filename: str) -> KnowledgeDocument:
    with schema_context(world.workspace_a.schema_name):
        return KnowledgeDocument.objects.defer("content").get(
            knowledge_base=base, filename=filename
        )


def test_the_list_has_an_empty_state_and_a_way_to_create(owner_client: Client) -> None:
    page = owner_client.get(_url("knowledge_list")).content.decode()
    assert "No knowledge bases yet" in page
    assert _url("knowledge_create") in page
    assert f'href="{_url("knowledge_list")}" aria-current="page"' in page  # the sidenav link


def test_owner_creates_a_base_and_a_duplicate_name_is_refused_beside_the_field(
    world: World, owner_client: Client
) -> None:
    response = owner_client.post(
        _url("knowledge_create"), {"name": "Returns policy", "description": "For the shop."}
    )
    with schema_context(world.workspace_a.schema_name):
        created = KnowledgeBase.objects.get(name="Returns policy")
    assert response.status_code == 302
    assert response["Location"] == _url("knowledge_detail", knowledge_base_id=created.pk)

    again = owner_client.post(_url("knowledge_create"), {"name": "returns POLICY"})
    assert again.status_code == 400
    page = again.content.decode()
    assert "A knowledge base named “returns POLICY” already exists." in page
    assert 'id="id_name_error"' in page  # the error is tied to the name field

    listing = owner_client.get(_url("knowledge_list")).content.decode()
    assert "Returns policy" in listing
    assert "For the shop." in listing


def test_uploads_show_progress_live_then_stop_polling(
    world: World, owner_client: Client, base: KnowledgeBase
) -> None:
    response = owner_client.post(
        _url("knowledge_upload", knowledge_base_id=base.pk),
        {
            "file": [
                SimpleUploadedFile("faq.md", b"# Gift cards\n\nGift cards never expire."),
                SimpleUploadedFile("prices.csv", b"plan,price\nTeam,29\nBusiness,59\n"),
            ]
        },
    )
    assert response.status_code == 302
    detail = owner_client.get(response["Location"]).content.decode()
    assert "Processing faq.md, prices.csv" in detail
    assert detail.count("Queued") == 2
    assert 'hx-trigger="every 1s"' in detail  # polls while anything is queued or processing

    faq = _document(world, base, "faq.md")
    with schema_context(world.workspace_a.schema_name):
        KnowledgeDocument.objects.filter(pk=faq.pk).update(
            status="processing", chunks_total=8, chunks_done=3
        )
    partial = owner_client.get(_url("knowledge_documents", knowledge_base_id=base.pk))
    panel = partial.content.decode()
    assert panel.lstrip().startswith('<section class="card" id="documents"')  # only the panel
    assert '<progress max="8" value="3"' in panel
    assert "3 of 8 passages embedded" in panel

    with schema_context(world.workspace_a.schema_name):
        for document in KnowledgeDocument.objects.filter(status__in=["queued", "processing"]):
            services.document_ingest(document_id=document.pk)
    done = owner_client.get(_url("knowledge_documents", knowledge_base_id=base.pk)).content.decode()
    assert "hx-trigger" not in done  # finished: the page stops polling
    assert "Queued" not in done
    assert "Processing" not in done
    assert done.count("badge--success") == 7  # the five help articles and the two uploads


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.docx", b"PK\x03\x04", "“notes.docx” is a .docx file, which is not supported."),
        ("fake.pdf", b"hello", "“fake.pdf” is not a PDF (it has no %PDF- header)."),
        ("empty.txt", b"", "“empty.txt” is empty."),
        ("dup.md", None, "“dup.md” is already in this knowledge base (uploaded as “refunds.md”)."),
    ],
)
def test_a_bad_upload_is_shown_beside_the_file_field(
    world: World,
    owner_client: Client,
    base: KnowledgeBase,
    name: str,
    data: bytes | None,
    message: str,
) -> None:
    if data is None:  # the same bytes as a document already in the base
        with schema_context(world.workspace_a.schema_name):
            data = bytes(KnowledgeDocument.objects.get(filename="refunds.md").content)
    response = owner_client.post(
        _url("knowledge_upload", knowledge_base_id=base.pk),
        {"file": SimpleUploadedFile(name, data)},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_file_error"' in page
    assert message in page
    with schema_context(world.workspace_a.schema_name):
        assert KnowledgeDocument.objects.filter(knowledge_base=base).count() == 5


def test_an_upload_without_a_file_names_the_field(
    owner_client: Client, base: KnowledgeBase
) -> None:
    response = owner_client.post(_url("knowledge_upload", knowledge_base_id=base.pk), {})
    assert response.status_code == 400
    assert "Choose at least one file to upload." in response.content.decode()


def test_try_a_search_shows_cited_passages_and_htmx_gets_only_the_results(
    owner_client: Client, base: KnowledgeBase
) -> None:
    url = _url("knowledge_detail", knowledge_base_id=base.pk)
    page = owner_client.get(url, {"q": "How long do refunds take?", "top_k": 3}).content.decode()
    assert "[1] refunds.md, How long refunds take" in page
    assert "[3]" in page
    assert "[4]" not in page
    assert "distance 0." in page

    partial = owner_client.get(
        url,
        {"q": "reset my password"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="search-results",
    ).content.decode()
    assert partial.lstrip().startswith('<div id="search-results"')
    assert "[1] password-reset.md" in partial
    assert "<html" not in partial

    empty = owner_client.get(url, {"q": ""})
    assert empty.status_code == 400
    assert "Type a question to search for." in empty.content.decode()


def test_delete_and_retry_documents_and_delete_the_base(
    world: World, owner_client: Client, base: KnowledgeBase
) -> None:
    refunds = _document(world, base, "refunds.md")
    page = owner_client.get(_url("knowledge_detail", knowledge_base_id=base.pk)).content.decode()
    assert 'data-confirm="Delete refunds.md?' in page  # asks before deleting (static/js/app.js)

    owner_client.post(
        _url("knowledge_document_delete", knowledge_base_id=base.pk, document_id=refunds.pk)
    )
    with schema_context(world.workspace_a.schema_name):
        assert not KnowledgeDocument.objects.filter(pk=refunds.pk).exists()
        plans = KnowledgeDocument.objects.get(filename="plans.md")
        KnowledgeDocument.objects.filter(pk=plans.pk).update(status="failed", error="Boom.")
    detail = owner_client.get(_url("knowledge_detail", knowledge_base_id=base.pk)).content.decode()
    assert "Boom." in detail
    assert "Retry" in detail

    owner_client.post(
        _url("knowledge_document_retry", knowledge_base_id=base.pk, document_id=plans.pk)
    )
    with schema_context(world.workspace_a.schema_name):
        plans.refresh_from_db()
        assert plans.status == "queued"
        assert plans.error == ""

        agent_services.agent_create(
            access=access_of(world.owner, world.workspace_a),
            name="Reader",
            model="offline:demo",
            tools=["knowledge_search"],
            knowledge_base_ids=[base.pk],
        )
    refused = owner_client.post(_url("knowledge_delete", knowledge_base_id=base.pk), follow=True)
    assert "is read by Reader" in refused.content.decode()

    other = owner_client.post(_url("knowledge_create"), {"name": "Scratch"})
    scratch_id = int(other["Location"].rstrip("/").rsplit("/", 1)[1])
    deleted = owner_client.post(_url("knowledge_delete", knowledge_base_id=scratch_id))
    assert deleted["Location"] == _url("knowledge_list")
    with schema_context(world.workspace_a.schema_name):
        assert list(KnowledgeBase.objects.values_list("name", flat=True)) == ["Help center"]


def _all_urls(base_id: int, document_id: int) -> list[tuple[str, str]]:
    return [
        ("get", _url("knowledge_list")),
        ("get", _url("knowledge_create")),
        ("post", _url("knowledge_create")),
        ("get", _url("knowledge_detail", knowledge_base_id=base_id)),
        ("get", _url("knowledge_documents", knowledge_base_id=base_id)),
        ("post", _url("knowledge_upload", knowledge_base_id=base_id)),
        ("post", _url("knowledge_delete", knowledge_base_id=base_id)),
        (
            "post",
            _url("knowledge_document_delete", knowledge_base_id=base_id, document_id=document_id),
        ),
        (
            "post",
            _url("knowledge_document_retry", knowledge_base_id=base_id, document_id=document_id),
        ),
    ]


def test_outsiders_get_404_on_every_knowledge_page(
    world: World, outsider_client: Client, base: KnowledgeBase
) -> None:
    document = _document(world, base, "refunds.md")
    for method, url in _all_urls(base.pk, document.pk):
        response = getattr(outsider_client, method)(url, {"name": "x"})
        assert response.status_code == 404, (method, url)
    # From their own workspace, alpha's ids do not exist.
    own = outsider_client.get(_url("knowledge_detail", slug="bravo", knowledge_base_id=base.pk))
    assert own.status_code == 404
    with schema_context(world.workspace_a.schema_name):
        assert KnowledgeDocument.objects.filter(pk=document.pk).exists()


def test_viewers_may_read_and_search_but_not_change(world: World, base: KnowledgeBase) -> None:
    viewer = make_user("viewer@alpha.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_a, role=Role.VIEWER)
    client = logged_in(viewer)
    document = _document(world, base, "refunds.md")
    for method, url in _all_urls(base.pk, document.pk):
        response = getattr(client, method)(url, {"name": "x"})
        expected = 200 if method == "get" and not url.endswith("/new/") else 403
        assert response.status_code == expected, (method, url)
    page = client.get(_url("knowledge_detail", knowledge_base_id=base.pk)).content.decode()
    assert "Upload documents" not in page
    assert "Delete knowledge base" not in page
    searched = client.get(
        _url("knowledge_detail", knowledge_base_id=base.pk), {"q": "refund"}
    ).content.decode()
    assert "[1] refunds.md" in searched
    with schema_context(world.workspace_a.schema_name):
        assert KnowledgeDocument.objects.filter(knowledge_base=base).count() == 5


def test_members_may_build(world: World, member_client: Client, base: KnowledgeBase) -> None:
    response = member_client.post(
        _url("knowledge_upload", knowledge_base_id=base.pk),
        {"file": SimpleUploadedFile("team.txt", b"Our support team answers within a day.")},
    )
    assert response.status_code == 302


def test_list_and_documents_panel_query_counts_do_not_grow_with_rows(
    world: World, owner_client: Client, base: KnowledgeBase
) -> None:
    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert owner_client.get(url).status_code == 200
        return len(captured)

    list_url = _url("knowledge_list")
    panel_url = _url("knowledge_documents", knowledge_base_id=base.pk)
    queries(list_url)  # the first request of a session does one-off work (session, user)
    before = queries(list_url), queries(panel_url)
    with schema_context(world.workspace_a.schema_name):
        for i in range(5):
            extra = KnowledgeBase.objects.create(name=f"Extra {i}")
            services.document_create(knowledge_base=base, filename=f"x{i}.txt", data=b"%d" % i)
            services.document_create(knowledge_base=extra, filename="y.txt", data=b"y%d" % i)
    assert (queries(list_url), queries(panel_url)) == before
