"""Uploaded files to text blocks with a location, and the checks that refuse a file early.

    content_type = check_upload(filename, data)   # raises UnreadableFile with a user message
    blocks = parse(content_type, data)            # [Block(text, location, span), ...]

A block is a paragraph (or a CSV row) that knows where it came from: a PDF page, the nearest
Markdown/HTML heading, a text line range or a CSV row. The chunker packs blocks into chunks and
turns their spans into citations like "page 3", "rows 12–20" or "Refund window".
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath

from pypdf import PageObject, PdfReader
from pypdf.errors import PdfReadError

PDF = "application/pdf"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
CSV = "text/csv"
HTML = "text/html"

CONTENT_TYPES: dict[str, str] = {
    ".txt": TEXT,
    ".text": TEXT,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".pdf": PDF,
    ".csv": CSV,
    ".html": HTML,
    ".htm": HTML,
}
ACCEPTED = ".txt, .md, .pdf, .csv, .html"
LOCATION_MAX = 80


class UnreadableFile(ValueError):
    """The file cannot be used; the message says why, for the person who uploaded it."""


@dataclass(frozen=True)
class Span:
    """A numbered position that ranges can be made of: ("row", 12, 12), ("line", 3, 9)."""

    kind: str
    first: int
    last: int


@dataclass(frozen=True)
class Block:
    text: str
    location: str = ""
    span: Span | None = None


def content_type_for(filename: str) -> str | None:
    return CONTENT_TYPES.get(PurePath(filename).suffix.lower())


def _clip(location: str) -> str:
    location = " ".join(location.split())
    return location if len(location) <= LOCATION_MAX else location[: LOCATION_MAX - 1] + "…"


# -- checks -----------------------------------------------------------------------------------


def decode_text(data: bytes) -> str:
    """UTF-8 (a byte-order mark is accepted and dropped); refuses binary data."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at position {exc.start}). "
            "Save it as UTF-8 and upload it again."
        ) from None
    if "\x00" in text:
        raise UnreadableFile("looks like a binary file, not text.")
    return text


def check_upload(filename: str, data: bytes) -> str:
    """The content type of an acceptable upload, checked by extension and by content.

    Raises UnreadableFile (message without the file name) for a wrong extension, an empty
    file, a .pdf that is not a PDF, text that is not UTF-8, CSV that does not parse, or a file
    with no text to extract."""
    content_type = content_type_for(filename)
    if content_type is None:
        suffix = PurePath(filename).suffix.lower()
        kind = f"is a {suffix} file, which is not supported" if suffix else "has no extension"
        raise UnreadableFile(f"{kind}. Upload {ACCEPTED} files.")
    if not data.strip():
        raise UnreadableFile("is empty.")
    if content_type == PDF:
        _check_pdf(data)
    elif not parse(content_type, data):
        raise UnreadableFile("has no text to extract.")
    return content_type


def _pdf_reader(data: bytes) -> PdfReader:
    if b"%PDF-" not in data[:1024]:  # the header may follow a little junk, never much
        raise UnreadableFile("is not a PDF (it has no %PDF- header).")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFile("is password-protected. Upload an unprotected copy.")
        if len(reader.pages) == 0:  # also opens the page tree, which broken files lack
            raise UnreadableFile("has no pages.")
    except UnreadableFile:
        raise
    except (PdfReadError, ValueError, KeyError, IndexError, TypeError, OSError) as exc:
        raise UnreadableFile(f"could not be read as a PDF ({exc}).") from None
    return reader


def _check_pdf(data: bytes) -> None:
    """Stop at the first page with text, so a long PDF costs little to check."""
    for page in _pdf_reader(data).pages:
        if _page_text(page).strip():
            return
    raise UnreadableFile("has no text to extract (a scanned PDF needs OCR first).")


def _page_text(page: PageObject) -> str:
    try:
        return page.extract_text() or ""
    except Exception as exc:  # pypdf raises many kinds on damaged content streams
        raise UnreadableFile(f"has a page that could not be read ({exc}).") from None


# -- parsers ----------------------------------------------------------------------------------


def parse(content_type: str, data: bytes) -> list[Block]:
    """Blocks of text in document order. Raises UnreadableFile."""
    if content_type == PDF:
        return parse_pdf(data)
    text = decode_text(data)
    if content_type == MARKDOWN:
        return parse_markdown(text)
    if content_type == HTML:
        return parse_html(text)
    if content_type == CSV:
        return parse_csv(text)
    return parse_text(text)


def _paragraphs(text: str) -> list[tuple[int, int, str]]:
    """(first line, last line, paragraph) for each run of non-blank lines, 1-based."""
    found: list[tuple[int, int, str]] = []
    start, lines = 0, list[str]()
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not lines:
                start = number
            lines.append(line.strip())
        elif lines:
            found.append((start, number - 1, " ".join(lines)))
            lines = []
    if lines:
        found.append((start, start + len(lines) - 1, " ".join(lines)))
    return found


def parse_text(text: str) -> list[Block]:
    return [
        Block(paragraph, span=Span("line", first, last))
        for first, last, paragraph in _paragraphs(text)
    ]


def parse_pdf(data: bytes) -> list[Block]:
    blocks: list[Block] = []
    for number, page in enumerate(_pdf_reader(data).pages, start=1):
        for _, _, paragraph in _paragraphs(_page_text(page)):
            blocks.append(Block(paragraph, location=f"page {number}"))
    return blocks


_ATX = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def _markdown_inline(text: str) -> str:
    return _LINK.sub(r"\1", _IMAGE.sub(r"\1", text))


def parse_markdown(text: str) -> list[Block]:
    """Paragraphs, each located at the nearest heading above it (ATX `#` or setext)."""
    blocks: list[Block] = []
    heading = ""
    paragraph: list[str] = []
    in_fence = False

    def flush() -> None:
        if paragraph:
            joined = _markdown_inline(" ".join(line.strip() for line in paragraph))
            if joined.strip():
                blocks.append(Block(joined, location=_clip(heading)))
            paragraph.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            paragraph.append(line)
            continue
        if in_fence:
            paragraph.append(line)
            continue
        atx = _ATX.match(line)
        if atx:
            flush()
            heading = _markdown_inline(atx.group(2))
            continue
        if _SETEXT.match(line) and len(paragraph) == 1:
            heading = _markdown_inline(paragraph[0].strip())
            paragraph.clear()
            continue
        if not line.strip():
            flush()
            continue
        paragraph.append(line)
    flush()
    return blocks


_DROPPED_TAGS = frozenset({"script", "style", "nav", "noscript", "template", "svg", "head"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "main",
        "li",
        "ul",
        "ol",
        "table",
        "tr",
        "br",
        "hr",
        "blockquote",
        "pre",
        "dd",
        "dt",
        "figcaption",
        "header",
        "footer",
        "aside",
        "form",
    }
)
_VOID_TAGS = frozenset({"br", "hr", "img", "input", "meta", "link", "source", "wbr"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._skip_depth = 0
        self._in_heading = False
        self._heading = ""
        self._text: list[str] = []

    def _flush(self) -> None:
        text = " ".join("".join(self._text).split())
        self._text = []
        if not text:
            return
        if self._in_heading:
            self._heading = _clip(text)
        else:
            self.blocks.append(Block(text, location=self._heading))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED_TAGS:
            self._skip_depth += 1
        elif self._skip_depth:
            return
        elif tag in _HEADINGS:
            self._flush()
            self._in_heading = True
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._skip_depth and tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED_TAGS:
            self._skip_depth = max(self._skip_depth - 1, 0)
        elif self._skip_depth:
            return
        elif tag in _HEADINGS:
            self._flush()
            self._in_heading = False
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def parse_html(text: str) -> list[Block]:
    """Visible text by block element, located at the nearest heading; script, style, nav and
    the head are dropped."""
    extractor = _TextExtractor()
    extractor.feed(text)
    extractor.close()
    return extractor.blocks


def parse_csv(text: str) -> list[Block]:
    """One block per data row, rendered with its header ("Plan: Pro; Price: 29"); the span is
    the record number as a spreadsheet shows it (the header is row 1)."""
    sample = text[:4096]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), dialect, strict=True))
    except csv.Error as exc:
        raise UnreadableFile(f"is not valid CSV ({exc}).") from None
    numbered = [(n, row) for n, row in enumerate(rows, start=1) if any(c.strip() for c in row)]
    if len(numbered) < 2:
        raise UnreadableFile("has no rows under its header row.")
    header = [cell.strip() or f"column {i}" for i, cell in enumerate(numbered[0][1], start=1)]
    blocks: list[Block] = []
    for number, row in numbered[1:]:
        cells = []
        for index, cell in enumerate(row):
            value = " ".join(cell.split())
            if value:
                name = header[index] if index < len(header) else f"column {index + 1}"
                cells.append(f"{name}: {value}")
        if cells:
            blocks.append(Block("; ".join(cells), span=Span("row", number, number)))
    return blocks
