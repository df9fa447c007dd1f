"""Reading the answer: text content types only, the body streamed under a byte cap and the
deadline (gzip/deflate decoded here so the cap applies to what is kept), HTML reduced to the
text a reader sees."""

from __future__ import annotations

import codecs
import re
import time
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import httpx2
from django.conf import settings

from agents.tools.base import ToolFailed

TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-javascript",
        "application/x-www-form-urlencoded",
        "application/x-ndjson",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/csv",
        "application/graphql",
        "application/sql",
        "image/svg+xml",
    }
)


def media_type(content_type: str) -> tuple[str, str | None]:
    media, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip().strip('"')
    return media.strip().lower(), charset


def is_text_type(media: str) -> bool:
    return (
        media.startswith("text/")
        or media in TEXT_TYPES
        or media.endswith("+json")
        or media.endswith("+xml")
    )


class _Readable(HTMLParser):
    """HTML as the text a reader sees: no scripts, styles or markup; block elements on their
    own lines, list items with a dash, links followed by their absolute URL."""

    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
    BLOCK = frozenset(
        {
            "address",
            "article",
            "aside",
            "blockquote",
            "br",
            "dd",
            "div",
            "dl",
            "dt",
            "figcaption",
            "footer",
            "form",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "header",
            "hr",
            "li",
            "main",
            "nav",
            "ol",
            "p",
            "pre",
            "section",
            "table",
            "tr",
            "ul",
        }
    )

    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skipping = 0
        self._in_title = False
        self._links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping += 1
            return
        if tag == "title":
            self._in_title = True
        if tag in self.BLOCK:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        if tag in ("td", "th"):
            self.parts.append(" | ")
        if tag == "a":
            href = dict(attrs).get("href") or ""
            absolute = urljoin(self.base_url, href.strip()) if href.strip() else ""
            keep = absolute.startswith(("http://", "https://")) and not href.startswith("#")
            self._links.append(absolute if keep else None)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skipping = max(0, self._skipping - 1)
            return
        if tag == "title":
            self._in_title = False
        if tag == "a" and self._links:
            href = self._links.pop()
            if href and not self._skipping:
                self.parts.append(f" ({href})")
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._in_title:
            self.title.append(data)
            return
        self.parts.append(data)

    def text(self) -> str:
        lines = (
            re.sub(r"[ \t\r\f\v\xa0]+", " ", line).strip()
            for line in "".join(self.parts).split("\n")
        )
        body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        title = " ".join("".join(self.title).split())
        return f"Title: {title}\n\n{body}" if title else body


def html_to_text(html: str, *, base_url: str = "") -> str:
    parser = _Readable(base_url)
    parser.feed(html)
    parser.close()
    return parser.text()


def decode_text(data: bytes, charset: str | None) -> str:
    encoding = "utf-8"
    if charset:
        try:
            encoding = codecs.lookup(charset).name
        except LookupError:
            encoding = "utf-8"
    return data.decode(encoding, errors="replace")


@dataclass
class Body:
    data: bytes
    truncated: bool


def read_body(response: httpx2.Response, *, deadline: float, limit: int, url: str) -> Body:
    """Stream the body, decompressing gzip/deflate ourselves so the cap applies to what is
    kept, and stop at `limit` bytes or at the deadline."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    decoder: Any = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        decoder = zlib.decompressobj(wbits=47)  # zlib or gzip header, detected
    elif encoding not in ("", "identity"):
        raise ToolFailed(
            f"The response from {url} uses the '{encoding}' encoding, which is not read."
        )
    kept = bytearray()
    try:
        for chunk in response.iter_raw():
            if time.monotonic() > deadline:
                raise ToolFailed(timed_out(url))
            data = decoder.decompress(chunk, limit + 1 - len(kept)) if decoder else chunk
            kept += data
            if len(kept) > limit:
                del kept[limit:]
                return Body(bytes(kept), truncated=True)
    except zlib.error as exc:
        raise ToolFailed(f"The response from {url} is not valid {encoding} data.") from exc
    except httpx2.TimeoutException as exc:
        raise ToolFailed(timed_out(url)) from exc
    except httpx2.HTTPError as exc:
        raise ToolFailed(f"The response from {url} broke off: {exc}.") from exc
    return Body(bytes(kept), truncated=False)


def timed_out(url: str) -> str:
    seconds = settings.HTTP_TOOL_TIMEOUT_SECONDS
    return f"The request to {url} timed out (limit {seconds:g} s)."
