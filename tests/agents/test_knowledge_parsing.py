"""Uploads to knowledge: each file type parses into chunks cited by where they came from, and
every bad upload is refused with a message on the `file` field, storing nothing."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context

from agents.knowledge import services
from agents.knowledge.chunking import CHUNK_SIZE, chunk_blocks
from agents.knowledge.parsers import parse
from agents.models import KnowledgeBase, KnowledgeChunk, KnowledgeDocument
from core.exceptions import ValidationFailed
from tenants.models import Workspace
from tenants.permissions import Access
from tests.helpers.documents import make_pdf

pytestmark = pytest.mark.django_db


def _chunks(content_type: str, data: bytes) -> list[tuple[str, str]]:
    return [(c.location, c.text) for c in chunk_blocks(parse(content_type, data))]


def test_a_pdf_is_cited_by_page() -> None:
    pdf = make_pdf(
        [
            "Loopdesk refund policy\n\nRefunds are possible within 30 days.",
            "Delivery\n\nExpress shipping takes two days.",
            "Contact\n\nWrite to billing@loopdesk.example.",
        ]
    )
    chunks = _chunks("application/pdf", pdf)
    by_page = {location: text for location, text in chunks}
    assert set(by_page) == {"page 1", "page 2", "page 3"}
    assert "within 30 days" in by_page["page 1"]
    assert "Express shipping takes two days" in by_page["page 2"]


def test_markdown_is_cited_by_its_nearest_heading() -> None:
    doc = (
        "# Refunds\n\nWe want you happy.\n\n## Refund window\n\nAsk within 30 days.\n\n"
        "Setext heading\n--------------\n\nA [link](https://x.example) to the form.\n"
        "```\n# not a heading inside code\n```\n"
    )
    chunks = _chunks("text/markdown", doc.encode())
    assert chunks[0] == ("Refunds", "We want you happy.")
    assert chunks[1] == ("Refund window", "Ask within 30 days.")
    assert chunks[2][0] == "Setext heading"
    assert "A link to the form." in chunks[2][1]
    assert "https://" not in chunks[2][1]
    assert "not a heading inside code" in chunks[2][1]


def test_html_drops_scripts_styles_and_navigation() -> None:
    page = (
        "<html><head><title>Help</title><style>p{color:red}</style></head><body>"
        "<nav>Home · Pricing · Login</nav><script>track('visit')</script>"
        "<h1>Shipping</h1><p>We ship to the EU &amp; the UK.</p>"
        "<h2>Costs</h2><ul><li>Standard: free over 150 USD</li><li>Express: 25 USD</li></ul>"
        "</body></html>"
    )
    chunks = _chunks("text/html", page.encode())
    assert chunks == [
        ("Shipping", "We ship to the EU & the UK."),
        ("Costs", "Standard: free over 150 USD\n\nExpress: 25 USD"),
    ]
    text = " ".join(t for _, t in chunks)
    assert "track" not in text
    assert "Pricing" not in text
    assert "color" not in text


def test_csv_rows_are_rendered_with_their_header_and_cited_by_row_range() -> None:
    rows = "\n".join(f"Plan {i},{i * 10} USD,{i} seats" for i in range(1, 61))
    chunks = _chunks("text/csv", f"plan,price,seats\n{rows}\n".encode())
    assert chunks[0][0] == "rows 2–" + chunks[0][0].split("–")[1]
    assert chunks[0][1].startswith("plan: Plan 1; price: 10 USD; seats: 1 seats")
    assert chunks[-1][0].endswith("–61")
    # Rows are records: no row is repeated in two chunks (no overlap), none is lost.
    all_rows = [line for _, text in chunks for line in text.split("\n\n")]
    assert len(all_rows) == 60 == len(set(all_rows))


def test_semicolon_csv_and_a_byte_order_mark_are_accepted() -> None:
    chunks = _chunks("text/csv", "\ufeffcountry;days\nFrance;3\nCanada;7\n".encode())
    assert chunks == [("rows 2–3", "country: France; days: 3\n\ncountry: Canada; days: 7")]


def test_text_is_cited_by_line_range_and_long_text_is_chunked_with_overlap() -> None:
    sentences = [f"Fact number {i} is about refunds and billing periods." for i in range(60)]
    text = "Intro line one\nintro line two\n\n" + " ".join(sentences)
    chunks = _chunks("text/plain", text.encode())
    # The intro is lines 1–2; the long paragraph is line 4 (one long line).
    assert chunks[0][0] == "lines 1–4"
    assert {location for location, _ in chunks[1:]} == {"line 4"}
    assert all(len(t) <= CHUNK_SIZE for _, t in chunks)
    assert len(chunks) >= 3
    # Consecutive chunks share whole sentences (overlap), and no sentence is cut.
    for (_, first), (_, second) in itertools.pairwise(chunks):
        assert first.split(". ")[-1].rstrip(".") in second
    for sentence in sentences:
        assert any(sentence in t for _, t in chunks)


# -- refusals ---------------------------------------------------------------------------------


@pytest.fixture
def base(workspace_a: Workspace) -> Iterator[KnowledgeBase]:
    with schema_context(workspace_a.schema_name):
        yield KnowledgeBase.objects.create(name="Help center")


def _upload(access: Access, base: KnowledgeBase, name: str, data: bytes) -> KnowledgeDocument:
    return services.document_upload(
        access=access, knowledge_base_id=base.pk, file=SimpleUploadedFile(name, data)
    )


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        (
            "notes.docx",
            b"PK\x03\x04 word file",
            "“notes.docx” is a .docx file, which is not supported",
        ),
        ("fake.pdf", b"Just some text pretending", "“fake.pdf” is not a PDF"),
        ("blob.txt", bytes(range(256)) * 4, "“blob.txt” is not UTF-8 text"),
        ("zeros.txt", b"abc\x00\x00\x00def", "“zeros.txt” looks like a binary file"),
        ("empty.md", b"", "“empty.md” is empty"),
        ("blank.txt", b"  \n\n \t ", "“blank.txt” is empty"),
        ("only-script.html", b"<script>alert(1)</script>", "“only-script.html” has no text"),
        ("broken.csv", b'name,notes\nA,"unterminated', "“broken.csv” is not valid CSV"),
        ("header.csv", b"name,price\n", "“header.csv” has no rows under its header row"),
        ("scan.pdf", make_pdf([""]), "“scan.pdf” has no text to extract"),
    ],
)
def test_bad_uploads_are_refused_on_the_file_field_and_nothing_is_stored(
    owner_access: Access, base: KnowledgeBase, name: str, data: bytes, problem: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _upload(owner_access, base, name, data)
    assert list(caught.value.fields) == ["file"]
    assert caught.value.fields["file"][0].startswith(problem), caught.value.fields
    assert KnowledgeDocument.objects.count() == 0


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(
    owner_access: Access, base: KnowledgeBase, settings
) -> None:
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 1000
    with pytest.raises(ValidationFailed) as caught:
        _upload(owner_access, base, "big.txt", b"word " * 400)
    assert caught.value.fields["file"] == ["“big.txt” is 2.0 KB; files may be at most 1000 bytes."]
    assert KnowledgeDocument.objects.count() == 0


def test_the_same_file_twice_in_one_base_is_refused_but_another_base_may_hold_it(
    owner_access: Access, base: KnowledgeBase
) -> None:
    first = _upload(owner_access, base, "refunds.md", b"# Refunds\n\nWithin 30 days.")
    assert first.status == KnowledgeDocument.Status.QUEUED
    assert first.content_type == "text/markdown"
    assert first.size_bytes == 26
    with pytest.raises(ValidationFailed) as caught:
        _upload(owner_access, base, "copy-of-refunds.md", b"# Refunds\n\nWithin 30 days.")
    assert caught.value.fields["file"] == [
        "“copy-of-refunds.md” is already in this knowledge base (uploaded as “refunds.md”)."
    ]
    other = KnowledgeBase.objects.create(name="Other")
    _upload(owner_access, other, "refunds.md", b"# Refunds\n\nWithin 30 days.")
    assert KnowledgeDocument.objects.count() == 2


def test_a_real_pdf_and_a_utf8_text_with_bom_are_accepted(
    owner_access: Access, base: KnowledgeBase
) -> None:
    pdf = _upload(owner_access, base, "policy.pdf", make_pdf(["Refunds within 30 days."]))
    txt = _upload(owner_access, base, "notes.txt", "\ufeffCafé opening hours.".encode())
    assert (pdf.content_type, txt.content_type) == ("application/pdf", "text/plain")
    services.document_ingest(document_id=pdf.pk)
    chunk = KnowledgeChunk.objects.get(document=pdf)
    assert chunk.location == "page 1"
    assert "Refunds within 30 days." in chunk.text
