"""The http_request tool: the workspace allowlist, SSRF refusals after DNS, redirects re-checked,
limits (size, time, redirects), what the model gets back, and the tool inside a real agent run
(the real `openai` SDK against FakeOpenAI, fetching a page from a loopback site)."""

from __future__ import annotations

import gzip
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django_tenants.utils import schema_context

from agents import services
from agents.models import AgentRun, AliasTarget, AllowedHost, ModelAlias, ProviderCredential
from agents.outbound.selectors import canonical_host, host_matches
from agents.runs.executor import execute_run
from agents.tools.base import ToolFailed
from agents.tools.http import HttpRequest, check_target, html_to_text
from tenants.models import Workspace
from tenants.permissions import Access
from tests.fakes import FakeOpenAI

pytestmark = pytest.mark.django_db

PAGE = """<!doctype html><html><head><title>Opening hours</title>
<style>body{color:red}</style><script>alert('x')</script></head>
<body><nav><a href="/">Home</a></nav><h1>Opening hours</h1>
<p>We are open <b>9&ndash;17</b> on weekdays.</p><ul><li>Monday</li><li>Friday</li></ul>
<p>See <a href="/contact">contact</a>.</p></body></html>"""


class SiteHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SiteServer

    def _record(self, body: bytes = b"") -> dict[str, Any]:
        parts = urlsplit(self.path)
        entry = {
            "method": self.command,
            "path": parts.path,
            "query": parse_qs(parts.query),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode(),
        }
        self.server.site.requests.append(entry)
        return entry

    def _send(self, status: int, body: bytes, content_type: str | None, **headers: str):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(self._record(self.rfile.read(length)))

    def do_GET(self) -> None:
        self._answer(self._record())

    def _answer(self, request: dict[str, Any]) -> None:
        path, query = request["path"], request["query"]
        if path == "/page.html":
            self._send(200, PAGE.encode(), "text/html; charset=utf-8", ETag='"v1"')
        elif path == "/data.json":
            self._send(200, b'{"open":true,"days":["mon","fri"]}', "application/json")
        elif path == "/echo":
            echo = {k: request[k] for k in ("method", "headers", "body")}
            self._send(200, json.dumps(echo).encode(), "application/json")
        elif path == "/big":
            self._send(200, b"a" * 500_000, "text/plain")
        elif path == "/bomb":
            body = gzip.compress(b"0" * 5_000_000)
            self._send(200, body, "text/plain", Content_Encoding="gzip")
        elif path == "/logo.png":
            self._send(200, b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")
        elif path == "/blob":
            self._send(200, b"\x00\x01\x02binary\x00", None)
        elif path == "/redirect":
            status = int(query.get("status", ["302"])[0])
            self._send(status, b"", "text/plain", Location=query["to"][0])
        elif path == "/loop":
            hop = int(query.get("n", ["0"])[0])
            self._send(302, b"", "text/plain", Location=f"/loop?n={hop + 1}")
        elif path == "/slow":
            self.server.site.release.wait(10)
            self._send(200, b"late", "text/plain")
        else:
            self._send(404, b"not here", "text/plain")

    def log_message(self, *args: Any) -> None:
        pass


class SiteServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, site: Site) -> None:
        super().__init__(("127.0.0.1", 0), SiteHandler)
        self.site = site

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):  # the tool hanging up is expected
            self.site.errors.append(error)


class Site:
    """A small website on 127.0.0.1 for the tool to fetch. Records every request; `/slow`
    answers only when the test ends (or `release` is set)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.errors: list[BaseException | None] = []
        self.release = threading.Event()
        self.server = SiteServer(self)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]

    def __enter__(self) -> Site:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as running:
        yield running
    assert running.errors == []


@pytest.fixture
def loopback_ok(settings, in_alpha: None) -> None:
    """The success paths: the site lives on 127.0.0.1, which only an operator may allow."""
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    AllowedHost.objects.create(host="127.0.0.1")


def fetch(url: str, **arguments: Any) -> str:
    tool = HttpRequest()
    call = {"url": url, **arguments}
    tool.validate(call)
    return tool.run(call)


def refused(url: str, **arguments: Any) -> str:
    with pytest.raises(ToolFailed) as excinfo:
        fetch(url, **arguments)
    return str(excinfo.value)


# --- The allowlist ----------------------------------------------------------------------------


def test_with_an_empty_allowlist_every_url_is_refused_and_the_message_says_where_to_add(
    in_alpha: None, site: Site
) -> None:
    message = refused(site.url("/page.html"))
    assert "allows no hosts yet" in message
    assert "/w/alpha/outbound/" in message
    assert site.requests == []


def test_a_host_not_on_the_allowlist_is_refused_before_any_connection(
    in_alpha: None, site: Site, settings
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    AllowedHost.objects.create(host="api.example.com")
    message = refused(site.url("/page.html"))
    assert "'127.0.0.1' is not on this workspace's allowlist" in message
    assert site.requests == []


def test_wildcard_entries_match_subdomains_only() -> None:
    entries = ["*.example.com", "api.other.org"]
    assert host_matches("api.example.com", entries) == "*.example.com"
    assert host_matches("a.b.example.com", entries) == "*.example.com"
    assert host_matches("example.com", entries) is None
    assert host_matches("badexample.com", entries) is None
    assert host_matches("example.com.evil.net", entries) is None
    assert host_matches("api.other.org", entries) == "api.other.org"
    assert host_matches("v2.api.other.org", entries) is None


def test_the_apex_of_a_wildcard_is_refused_by_the_tool(in_alpha: None) -> None:
    AllowedHost.objects.create(host="*.example.com")
    assert "'example.com' is not on this workspace's allowlist" in refused("https://example.com/")


def test_an_allowlisted_host_in_another_workspace_does_not_count(
    workspace_a: Workspace, workspace_b: Workspace, site: Site, settings
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    with schema_context(workspace_b.schema_name):
        AllowedHost.objects.create(host="127.0.0.1")
        assert fetch(site.url("/data.json")).startswith("HTTP 200")
    with schema_context(workspace_a.schema_name):
        assert "allows no hosts yet" in refused(site.url("/data.json"))
    assert len(site.requests) == 1


# --- SSRF: refused after DNS, even when allowlisted --------------------------------------------


@pytest.mark.parametrize(
    ("url", "entry", "address"),
    [
        ("http://127.0.0.1/", "127.0.0.1", "127.0.0.1"),
        ("http://localhost/", "localhost", "127.0.0.1"),
        ("http://10.0.0.1/", "10.0.0.1", "10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "169.254.169.254"),
        ("http://[::1]:8080/", "::1", "::1"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", "127.0.0.1"),
        ("http://0.0.0.0/", "0.0.0.0", "0.0.0.0"),  # noqa: S104 (a URL, not a bind address)
    ],
)
def test_private_loopback_and_metadata_addresses_are_refused_even_when_allowlisted(
    in_alpha: None, url: str, entry: str, address: str
) -> None:
    AllowedHost.objects.create(host=canonical_host(entry) or entry)  # as the page stores it
    message = refused(url)
    assert "private, loopback, link-local or reserved" in message
    assert address in message


def test_a_name_that_resolves_to_loopback_is_refused_even_when_allowlisted(
    in_alpha: None, site: Site
) -> None:
    AllowedHost.objects.create(host="localhost")
    message = refused(site.url("/page.html", host="localhost"))
    assert "'localhost' resolves to 127.0.0.1" in message
    assert site.requests == []  # refused before connecting


def test_a_redirect_is_checked_like_the_first_request() -> None:
    entries = ["169.254.169.254"]
    with pytest.raises(ToolFailed, match=r"a redirect from https://ok\.example/\) resolves"):
        check_target(
            "http://169.254.169.254/latest/", entries, redirected_from="https://ok.example/"
        )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "Only http:// and https://"),
        ("gopher://127.0.0.1:70/", "Only http:// and https://"),
        ("http://user:secret@127.0.0.1/", "user name or password"),
        ("http://127.0.0.1:notaport/", "not a valid URL"),
    ],
)
def test_only_plain_http_urls_are_accepted(loopback_ok: None, url: str, message: str) -> None:
    assert message in refused(url)


# --- What comes back ----------------------------------------------------------------------------


def test_html_comes_back_as_readable_text_with_status_and_headers(
    loopback_ok: None, site: Site
) -> None:
    output = fetch(site.url("/page.html"))
    assert output.startswith("HTTP 200 text/html\n")
    assert 'ETag: "v1"' in output
    assert "Title: Opening hours" in output
    assert "We are open 9–17 on weekdays." in output
    assert "- Monday" in output
    assert "- Friday" in output
    assert f"contact ({site.url('/contact')})" in output
    assert "alert" not in output
    assert "color:red" not in output
    assert "<p>" not in output


def test_json_is_pretty_printed(loopback_ok: None, site: Site) -> None:
    output = fetch(site.url("/data.json"))
    assert output.startswith("HTTP 200 application/json")
    assert '"days": [\n    "mon",' in output


def test_head_returns_status_and_headers_only(loopback_ok: None, site: Site) -> None:
    output = fetch(site.url("/page.html"), method="HEAD")
    assert output.startswith("HTTP 200 text/html")
    assert "Opening hours" not in output
    assert site.requests[-1]["method"] == "HEAD"


def test_post_sends_the_body_with_a_json_content_type_and_the_name_as_host(
    loopback_ok: None, site: Site
) -> None:
    output = fetch(
        site.url("/echo"),
        method="POST",
        body='{"q": "hours"}',
        headers={"Authorization": "Bearer t0ken", "X-Api-Key": "k"},
    )
    echoed = site.requests[-1]
    assert echoed["body"] == '{"q": "hours"}'
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["headers"]["authorization"] == "Bearer t0ken"
    assert echoed["headers"]["host"] == f"127.0.0.1:{site.port}"
    assert echoed["headers"]["accept-encoding"] == "identity"
    assert output.startswith("HTTP 200 application/json")


@pytest.mark.parametrize("header", ["Host", "Content-Length", "Transfer-Encoding", "Connection"])
def test_headers_that_would_defeat_the_checks_are_refused(
    loopback_ok: None, site: Site, header: str
) -> None:
    message = refused(site.url("/echo"), headers={header: "x"})
    assert f"The header '{header}' cannot be set" in message
    assert site.requests == []


def test_a_body_needs_post_and_a_method_must_be_known(loopback_ok: None, site: Site) -> None:
    assert "only be sent with method POST" in refused(site.url("/echo"), body="x")
    assert "method" in refused(site.url("/echo"), method="DELETE")


def test_binary_content_is_refused(loopback_ok: None, site: Site) -> None:
    assert "image/png" in refused(site.url("/logo.png"))
    assert "binary content is not read" in refused(site.url("/logo.png"))
    assert "looks binary" in refused(site.url("/blob"))


def test_error_statuses_come_back_as_answers(loopback_ok: None, site: Site) -> None:
    assert fetch(site.url("/missing")).startswith("HTTP 404 text/plain")


# --- Limits -------------------------------------------------------------------------------------


def test_a_long_body_is_truncated_at_the_cap_and_says_so(
    loopback_ok: None, site: Site, settings
) -> None:
    settings.HTTP_TOOL_MAX_BYTES = 1_000
    output = fetch(site.url("/big"))
    head, body = output.split("\n\n", 1)
    assert "Truncated: the body is longer than 1,000 bytes" in head
    assert body == "a" * 1_000


def test_a_compressed_body_is_capped_after_decompression(
    loopback_ok: None, site: Site, settings
) -> None:
    settings.HTTP_TOOL_MAX_BYTES = 2_000
    output = fetch(site.url("/bomb"))
    assert "Truncated" in output
    assert output.split("\n\n", 1)[1] == "0" * 2_000


def test_a_slow_server_hits_the_timeout(loopback_ok: None, site: Site, settings) -> None:
    settings.HTTP_TOOL_TIMEOUT_SECONDS = 0.3
    assert "timed out (limit 0.3 s)" in refused(site.url("/slow"))


def test_redirects_are_followed_within_the_allowlist(loopback_ok: None, site: Site) -> None:
    output = fetch(site.url("/redirect?to=/data.json"))
    assert output.startswith("HTTP 200 application/json")
    assert f"Final URL: {site.url('/data.json')} (after 1 redirect(s))" in output
    assert site.paths() == ["/redirect", "/data.json"]


def test_a_redirect_to_a_host_off_the_allowlist_is_refused(loopback_ok: None, site: Site) -> None:
    elsewhere = site.url("/data.json", host="localhost")  # same server, a name not allowed
    message = refused(site.url(f"/redirect?to={elsewhere}"))
    assert "'localhost' (a redirect from" in message
    assert "not on this workspace's allowlist" in message
    assert site.paths() == ["/redirect"]


def test_at_most_three_redirects_are_followed(loopback_ok: None, site: Site) -> None:
    message = refused(site.url("/loop"))
    assert "Stopped after 3 redirects" in message
    assert site.paths() == ["/loop"] * 4


def test_credentials_are_not_carried_to_another_host(loopback_ok: None, site: Site) -> None:
    AllowedHost.objects.create(host="localhost")
    elsewhere = site.url("/echo", host="localhost")
    fetch(
        site.url(f"/redirect?status=307&to={elsewhere}"),
        headers={"Authorization": "Bearer secret", "Cookie": "s=1", "X-Trace": "t"},
    )
    first, second = site.requests
    assert first["headers"]["authorization"] == "Bearer secret"
    assert "authorization" not in second["headers"]
    assert "cookie" not in second["headers"]
    assert second["headers"]["x-trace"] == "t"
    assert second["headers"]["host"] == f"localhost:{site.port}"


def test_html_to_text_keeps_the_words_and_drops_the_markup() -> None:
    text = html_to_text("<p>a&amp;b<br>c</p><script>x()</script><table><tr><td>1<td>2</table>")
    assert "a&b\nc" in text
    assert "x()" not in text
    assert "| 1 | 2" in text


# --- Inside agent runs ----------------------------------------------------------------------------


@pytest.fixture
def fake_model(settings, fake_openai: FakeOpenAI, in_alpha: None) -> str:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    credential = ProviderCredential(name="oa", kind="openai", base_url=fake_openai.base_url)
    credential.set_api_key("sk-test-key")
    credential.save()
    alias = ModelAlias.objects.create(name="gpt")
    AliasTarget.objects.create(
        alias=alias, position=0, kind="openai", model="gpt-test", credential=credential
    )
    return "gpt"


def test_an_agent_fetches_a_page_through_the_real_openai_sdk(
    owner_access: Access, fake_model: str, fake_openai: FakeOpenAI, site: Site
) -> None:
    AllowedHost.objects.create(host="127.0.0.1")
    fake_openai.queue(tool_calls=[("http_request", {"url": site.url("/page.html")})])
    fake_openai.queue(text="They open 9–17 on weekdays.")
    agent = services.agent_create(
        access=owner_access, name="Hours", model=fake_model, tools=["http_request"]
    )
    run = services.agent_run_start(access=owner_access, agent_id=agent.pk, input="Hours?")
    execute_run(run.pk)
    run.refresh_from_db()

    assert run.status == AgentRun.Status.SUCCEEDED, run.error
    assert run.output == "They open 9–17 on weekdays."
    [step] = run.tool_steps
    assert step["tool"] == "http_request"
    assert step["ok"] is True
    assert "We are open 9–17 on weekdays." in step["output"]
    assert site.paths() == ["/page.html"]
    # The model saw the page as a tool result, and was offered the tool with its schema.
    first, second = fake_openai.requests_to("chat/completions")
    offered = [t["function"]["name"] for t in first.body["tools"]]
    assert offered == ["http_request"]
    tool_message = next(m for m in second.body["messages"] if m["role"] == "tool")
    assert "Title: Opening hours" in tool_message["content"]


def test_an_agent_without_the_tool_cannot_use_it_even_when_a_tool_result_asks(
    owner_access: Access, fake_model: str, fake_openai: FakeOpenAI, site: Site
) -> None:
    AllowedHost.objects.create(host="127.0.0.1")
    # The page the agent reads (through a tool it has) tells the model to fetch another URL;
    # the model obeys and asks for http_request, which this version was not given.
    fake_openai.queue(tool_calls=[("calculator", {"expression": "6*7"})])
    fake_openai.queue(tool_calls=[("http_request", {"url": site.url("/echo?exfil=1")})])
    fake_openai.queue(text="done")
    agent = services.agent_create(
        access=owner_access, name="Maths", model=fake_model, tools=["calculator"]
    )
    run = services.agent_run_start(access=owner_access, agent_id=agent.pk, input="6*7?")
    execute_run(run.pk)
    run.refresh_from_db()

    calc, fetch_step = run.tool_steps
    assert calc["ok"] is True
    assert calc["output"] == "42"
    assert fetch_step["tool"] == "http_request"
    assert fetch_step["ok"] is False
    assert "not available to this agent" in fetch_step["output"]
    assert site.requests == []
    offered = [t["function"]["name"] for t in fake_openai.requests[1].body["tools"]]
    assert offered == ["calculator"]
