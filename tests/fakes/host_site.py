"""A customer's web site on loopback, for the embeddable chat (docs/embed.md): serves `/` (a
page with the one-line widget script) and `/blank` (the same page without it), both under a
strict Content-Security-Policy (no inline script or style; scripts and frames only from the
chat's server), as a careful customer would. Stdlib only, ephemeral port."""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit


class HostSite:
    def __init__(self, *, chat_server: str) -> None:
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(chat_server))
        self.policy = (
            f"default-src 'none'; script-src {origin}; frame-src {origin}; "
            "style-src 'self'; img-src 'self'"
        )
        self.pages: dict[str, bytes] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = site.pages.get(self.path.split("?")[0])
                self.send_response(200 if page else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Security-Policy", site.policy)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(page or b"not found")

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def show(self, *, widget_src: str, chat_url: str, end_user_token: str = "") -> None:
        """Serve the pages with this widget snippet (and the customer's end-user token)."""
        token = f' data-end-user-token="{html.escape(end_user_token)}"' if end_user_token else ""
        script = (
            f'<script src="{html.escape(widget_src)}" data-chat="{html.escape(chat_url)}" '
            f'data-colour="#0f766e" data-label="Chat with Acme"{token} async></script>'
        )
        body = (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<title>Acme shop</title></head><body><h1>Acme shop</h1>"
            "<p>Everything for your garden.</p>{script}</body></html>"
        )
        self.pages = {
            "/": body.format(script=script).encode(),
            "/blank": body.format(script="").encode(),
        }

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
