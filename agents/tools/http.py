"""The http_request tool: GET, HEAD or POST to a host on the workspace's allowlist.

Every hop (the first request and each redirect) is checked the same way, in this order:

1. http or https only, no user info in the URL;
2. the host is on the workspace allowlist (`agents.outbound.selectors.host_matches`);
3. the name is resolved once, and every address it resolves to must pass the outbound guard
   (`agents.netguard`: no loopback or private addresses unless OUTBOUND_ALLOW_PRIVATE_NETWORKS;
   never link-local incl. 169.254.169.254, metadata, multicast or reserved; IPv4 hidden in
   IPv6 mapped/NAT64/6to4 addresses is checked too);
4. the connection goes to that checked address (the URL is rewritten to the IP, the `Host`
   header and TLS SNI/certificate check use the name), so a second DNS answer can never send
   the request elsewhere (no DNS-rebinding window). No proxy from the environment is used.

Limits: one deadline for the whole call (HTTP_TOOL_TIMEOUT_SECONDS), a body cap
(HTTP_TOOL_MAX_BYTES, read as a stream and cut), HTTP_TOOL_MAX_REDIRECTS hops. Binary content
types are refused before their body is read. HTML comes back as readable text, JSON
pretty-printed. The answer is untrusted text for the model; it can never add a tool.

Headers: the model may set ordinary headers (Accept, Content-Type, Authorization, Cookie, API
key headers...). `Host`, the framing and hop-by-hop headers (Content-Length,
Transfer-Encoding, Connection, TE, Upgrade, Expect...), Proxy-* and Accept-Encoding are
refused: they would defeat the pinning or the size cap. Authorization and Cookie are dropped
when a redirect leaves the host they were given for.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import re
import time
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx2
from django.conf import settings
from django.urls import NoReverseMatch, reverse

from agents.netguard import AddressRefused, resolve_checked
from agents.outbound.selectors import allowed_host_entries, canonical_host, host_matches
from agents.tools.base import NO_TOOL_CONTEXT, Tool, ToolContext, ToolFailed
from tenants.models import Workspace
from tenants.schemas import current_schema

METHODS = ("GET", "HEAD", "POST")
REFUSED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "proxy-authorization",
        "proxy-connection",
        "accept-encoding",
    }
)
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
SHOWN_HEADERS = (
    "Content-Length",
    "Content-Language",
    "Last-Modified",
    "ETag",
    "Cache-Control",
    "Location",
    "Retry-After",
    "WWW-Authenticate",
)
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
USER_AGENT = "AgentMarket-HTTPTool/1 (+agents; the workspace allowlisted this host)"
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")


# --- Where a request may go ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks, and the address it was checked at."""

    url: str
    scheme: str
    host: str  # canonical (lower case, IDNA)
    port: int | None
    address: str

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return f"{name}:{self.port}" if self.port is not None else name

    def pinned_url(self) -> httpx2.URL:
        return httpx2.URL(self.url).copy_with(host=self.address)


def _outbound_page() -> str:
    slug = Workspace.objects.filter(schema_name=current_schema()).values_list("slug", flat=True)
    try:
        return reverse("outbound_hosts", kwargs={"workspace_slug": slug.first() or "-"})
    except NoReverseMatch:  # pragma: no cover - the URL always exists
        return "Outbound access"


def resolve_public(host: str, port: int, *, via: str = "") -> str:
    """Resolve once through the outbound guard (`agents.netguard`); returns the checked
    address to connect to."""
    try:
        addresses = resolve_checked(host, port)
    except AddressRefused as exc:
        raise ToolFailed(
            f"Refused: '{host}'{via} resolves to {exc.address}, a private, loopback, "
            "link-local or reserved address. The http_request tool only reaches the "
            "public internet."
        ) from exc
    except (OSError, UnicodeError) as exc:
        raise ToolFailed(f"The host '{host}'{via} does not resolve.") from exc
    return addresses[0]


def check_target(url: str, entries: list[str], *, redirected_from: str | None = None) -> Target:
    """Raise ToolFailed (saying why, for the model and the person reading the run) unless
    `url` may be requested. `entries`: the workspace allowlist."""
    via = f" (a redirect from {redirected_from})" if redirected_from else ""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ToolFailed(f"'{url}'{via} is not a valid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolFailed(f"Only http:// and https:// URLs with a host can be requested{via}.")
    if parts.username is not None or parts.password is not None:
        raise ToolFailed("URLs with a user name or password (user@host) are not allowed.")
    host = canonical_host(parts.hostname)
    if host is None:
        raise ToolFailed(f"'{parts.hostname}'{via} is not a valid host name.")
    if not entries:
        raise ToolFailed(
            "This workspace allows no hosts yet, so every URL is refused. An owner or admin "
            f"can add hosts on the Outbound access page ({_outbound_page()})."
        )
    if host_matches(host, entries) is None:
        raise ToolFailed(
            f"Refused: '{host}'{via} is not on this workspace's allowlist of hosts. An owner or "
            f"admin can add it on the Outbound access page ({_outbound_page()})."
        )
    default_port = 443 if parts.scheme == "https" else 80
    address = resolve_public(host, port or default_port, via=via)
    return Target(url=url, scheme=parts.scheme, host=host, port=port, address=address)


# --- Reading the answer ----------------------------------------------------------------------


def _media_type(content_type: str) -> tuple[str, str | None]:
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


def _decode(data: bytes, charset: str | None) -> str:
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


def _read_body(response: httpx2.Response, *, deadline: float, limit: int, url: str) -> Body:
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
                raise ToolFailed(_timed_out(url))
            data = decoder.decompress(chunk, limit + 1 - len(kept)) if decoder else chunk
            kept += data
            if len(kept) > limit:
                del kept[limit:]
                return Body(bytes(kept), truncated=True)
    except zlib.error as exc:
        raise ToolFailed(f"The response from {url} is not valid {encoding} data.") from exc
    except httpx2.TimeoutException as exc:
        raise ToolFailed(_timed_out(url)) from exc
    except httpx2.HTTPError as exc:
        raise ToolFailed(f"The response from {url} broke off: {exc}.") from exc
    return Body(bytes(kept), truncated=False)


def _timed_out(url: str) -> str:
    seconds = settings.HTTP_TOOL_TIMEOUT_SECONDS
    return f"The request to {url} timed out (limit {seconds:g} s)."


# --- The tool --------------------------------------------------------------------------------


class HttpRequest(Tool):
    name = "http_request"
    description = (
        "Fetch a URL over HTTP(S) with GET, HEAD or POST. Only hosts on the workspace's "
        "allowlist can be reached. Returns the status, content type, a few headers and the body "
        "as text (HTML reduced to readable text, JSON pretty-printed); binary files are refused "
        "and long bodies are truncated."
    )
    parameters = {
        "type": "object",
        "properties": {
            "url": {
                "type": "string",
                "minLength": 1,
                "maxLength": 2048,
                "description": "An absolute http:// or https:// URL.",
            },
            "method": {"type": "string", "enum": list(METHODS), "default": "GET"},
            "headers": {
                "type": "object",
                "maxProperties": 20,
                "additionalProperties": {"type": "string", "maxLength": 4096},
                "description": 'Extra request headers, e.g. {"Accept": "application/json"}.',
            },
            "body": {
                "type": "string",
                "maxLength": 100_000,
                "description": "POST only: the request body (JSON is sent as application/json).",
            },
        },
        "required": ["url"],
        "additionalProperties": False,
    }

    def run(self, arguments: dict[str, Any], context: ToolContext = NO_TOOL_CONTEXT) -> str:
        method = arguments.get("method") or "GET"
        body: str | None = arguments.get("body")
        if body is not None and method != "POST":
            raise ToolFailed("A body can only be sent with method POST.")
        headers = self._headers(arguments.get("headers") or {}, body)
        entries = allowed_host_entries()
        deadline = time.monotonic() + settings.HTTP_TOOL_TIMEOUT_SECONDS
        url: str = arguments["url"].strip()
        target = check_target(url, entries)
        hops: list[str] = []
        jar = httpx2.Cookies()
        jar.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # no cookies across hops
        with httpx2.Client(trust_env=False, follow_redirects=False, cookies=jar) as client:
            while True:
                response = self._send(client, target, method, headers, body, deadline)
                try:
                    location = response.headers.get("location")
                    if response.status_code not in REDIRECTS or not location:
                        return self._answer(response, target, method, hops, deadline)
                    if len(hops) >= settings.HTTP_TOOL_MAX_REDIRECTS:
                        raise ToolFailed(
                            f"Stopped after {len(hops)} redirects (the limit); the last answer "
                            f"(HTTP {response.status_code}) pointed to {location}."
                        )
                finally:
                    response.close()
                next_url = urljoin(target.url, location.strip())
                following = check_target(next_url, entries, redirected_from=target.url)
                if response.status_code == 303 or (
                    response.status_code in (301, 302) and method == "POST"
                ):
                    method = "GET" if method != "HEAD" else "HEAD"
                    body = None
                    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
                if following.host != target.host:
                    headers = {
                        k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS
                    }
                hops.append(next_url)
                target = following

    @staticmethod
    def _headers(given: dict[str, str], body: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in given.items():
            if not _HEADER_NAME.match(name):
                raise ToolFailed(f"'{name}' is not a valid header name.")
            if name.lower() in REFUSED_HEADERS:
                raise ToolFailed(
                    f"The header '{name}' cannot be set: the tool sets it itself "
                    "(Host, framing, proxy and encoding headers are refused)."
                )
            if any(c in value for c in "\r\n\0"):
                raise ToolFailed(f"The value of header '{name}' contains a line break.")
            headers[name] = value
        lower = {k.lower() for k in headers}
        if "user-agent" not in lower:
            headers["User-Agent"] = USER_AGENT
        if "accept" not in lower:
            headers["Accept"] = "text/html, application/json;q=0.9, text/*;q=0.8, */*;q=0.1"
        if body is not None and "content-type" not in lower:
            try:
                json.loads(body)
                headers["Content-Type"] = "application/json"
            except ValueError:
                headers["Content-Type"] = "text/plain; charset=utf-8"
        headers["Accept-Encoding"] = "identity"
        return headers

    @staticmethod
    def _send(
        client: httpx2.Client,
        target: Target,
        method: str,
        headers: dict[str, str],
        body: str | None,
        deadline: float,
    ) -> httpx2.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ToolFailed(_timed_out(target.url))
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        request = client.build_request(
            method,
            target.pinned_url(),
            headers={**headers, "Host": target.host_header},
            content=body.encode() if body is not None else None,
            timeout=httpx2.Timeout(remaining),
            extensions=extensions,
        )
        try:
            return client.send(request, stream=True)
        except httpx2.TimeoutException as exc:
            raise ToolFailed(_timed_out(target.url)) from exc
        except httpx2.HTTPError as exc:
            raise ToolFailed(f"Could not reach {target.url}: {exc}.") from exc

    @staticmethod
    def _answer(
        response: httpx2.Response, target: Target, method: str, hops: list[str], deadline: float
    ) -> str:
        media, charset = _media_type(response.headers.get("content-type", ""))
        lines = [f"HTTP {response.status_code} {media or '(no content type)'}"]
        if hops:
            lines.append(f"Final URL: {target.url} (after {len(hops)} redirect(s))")
        lines += [f"{h}: {response.headers[h]}" for h in SHOWN_HEADERS if h in response.headers]
        if method == "HEAD":
            return "\n".join(lines)
        if media and not is_text_type(media):
            raise ToolFailed(
                f"HTTP {response.status_code} {media} from {target.url}: binary content is not "
                "read. The http_request tool reads text, HTML and JSON only."
            )
        limit = settings.HTTP_TOOL_MAX_BYTES
        read = _read_body(response, deadline=deadline, limit=limit, url=target.url)
        if not media and b"\0" in read.data[:4096]:
            raise ToolFailed(
                f"HTTP {response.status_code} from {target.url} has no content type and looks "
                "binary; it is not read."
            )
        text = _decode(read.data, charset)
        if media in ("text/html", "application/xhtml+xml"):
            text = html_to_text(text, base_url=target.url)
        elif (media == "application/json" or media.endswith("+json")) and not read.truncated:
            with contextlib.suppress(ValueError):  # not JSON after all: shown as it came
                text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        if read.truncated:
            lines.append(
                f"Truncated: the body is longer than {limit:,} bytes; only the first "
                f"{limit:,} were read."
            )
        return "\n".join(lines) + "\n\n" + (text if text.strip() else "(empty body)")
