"""The http_request tool itself: the request the model asks for, its headers checked, each
redirect hop checked again (`targets.check_target`), and the answer as text (`reading`)."""

from __future__ import annotations

import contextlib
import json
import re
import time
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urljoin

import httpx2
from django.conf import settings

from agents.outbound.selectors import allowed_host_entries
from agents.tools.base import NO_TOOL_CONTEXT, Tool, ToolContext, ToolFailed
from agents.tools.http.reading import (
    decode_text,
    html_to_text,
    is_text_type,
    media_type,
    read_body,
    timed_out,
)
from agents.tools.http.targets import Target, check_target

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
USER_AGENT = "AgentMarket-HTTPTool/1 (+agents; the workspace allowlisted this host)"
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")


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
            raise ToolFailed(timed_out(target.url))
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
            raise ToolFailed(timed_out(target.url)) from exc
        except httpx2.HTTPError as exc:
            raise ToolFailed(f"Could not reach {target.url}: {exc}.") from exc

    @staticmethod
    def _answer(
        response: httpx2.Response, target: Target, method: str, hops: list[str], deadline: float
    ) -> str:
        media, charset = media_type(response.headers.get("content-type", ""))
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
        read = read_body(response, deadline=deadline, limit=limit, url=target.url)
        if not media and b"\0" in read.data[:4096]:
            raise ToolFailed(
                f"HTTP {response.status_code} from {target.url} has no content type and looks "
                "binary; it is not read."
            )
        text = decode_text(read.data, charset)
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
