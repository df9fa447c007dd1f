"""A loopback OpenID Connect provider: discovery document, JWKS, an authorize endpoint that
signs in whoever the test scripted (no login form) and redirects back with a code, a token
endpoint that checks the client's secret and PKCE verifier and issues an RS256-signed id_token,
and userinfo.

    with FakeOidcProvider(client_id="cid", client_secret="s3cret") as idp:
        idp.user = {"sub": "u-1", "email": "ann@acme.test", "email_verified": True}
        ...  # point the workspace at idp.issuer
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class FakeOidcProvider:
    def __init__(self, *, client_id: str = "client-1", client_secret: str = "secret-1") -> None:  # noqa: S107
        self.client_id = client_id
        self.client_secret = client_secret
        self.user: dict[str, Any] = {"sub": "user-1", "email": "ann@acme.test"}
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "key-1"
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.token_errors: list[str] = []
        self._codes: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, dict[str, Any]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def issuer(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- what a browser does at the IdP ----------------------------------------------------
    def authorize(self, url: str) -> str:
        """What the IdP's sign-in page would do for `url` (the authorize redirect our app sent
        the browser to): the scripted user signs in; returns the redirect back to the app."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert query["client_id"] == self.client_id, query
        code = secrets.token_urlsafe(16)
        self._codes[code] = {
            "redirect_uri": query["redirect_uri"],
            "nonce": query.get("nonce"),
            "code_challenge": query.get("code_challenge"),
            "user": dict(self.user),
        }
        self.requests.append(("GET", "/authorize"))
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"

    # --- HTTP ----------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(handler.path).path
        self.requests.append((method, path))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        if method == "GET" and path == "/.well-known/openid-configuration":
            return self._json(handler, 200, self.discovery())
        if method == "GET" and path == "/jwks":
            return self._json(handler, 200, self.jwks())
        if method == "POST" and path == "/token":
            status, payload = self._token(handler, {k: v[0] for k, v in parse_qs(body).items()})
            return self._json(handler, status, payload)
        if method == "GET" and path == "/userinfo":
            token = (handler.headers.get("Authorization") or "").removeprefix("Bearer ")
            if token not in self._tokens:
                return self._json(handler, 401, {"error": "invalid_token"})
            return self._json(handler, 200, self._tokens[token])
        if method == "GET" and path == "/authorize":
            location = self.authorize(f"{self.issuer}{handler.path}")
            handler.send_response(302)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return None
        return self._json(handler, 404, {"error": "not_found"})

    def _json(self, handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": self.kid,
                    "n": _b64(numbers.n),
                    "e": _b64(numbers.e),
                }
            ]
        }

    def _client_credentials(
        self, handler: BaseHTTPRequestHandler, form: dict[str, str]
    ) -> tuple[str, str]:
        auth = handler.headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            return client_id, secret
        return form.get("client_id", ""), form.get("client_secret", "")

    def _token(
        self, handler: BaseHTTPRequestHandler, form: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        client_id, secret = self._client_credentials(handler, form)
        if client_id != self.client_id or secret != self.client_secret:
            self.token_errors.append("invalid_client")
            return 401, {"error": "invalid_client"}
        grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            self.token_errors.append("invalid_grant")
            return 400, {"error": "invalid_grant"}
        if grant["code_challenge"]:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if expected != grant["code_challenge"]:
                self.token_errors.append("invalid_grant (PKCE)")
                return 400, {"error": "invalid_grant"}
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            **grant["user"],
        }
        if grant["nonce"]:
            claims["nonce"] = grant["nonce"]
        id_token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        access_token = secrets.token_urlsafe(16)
        self._tokens[access_token] = grant["user"]
        return 200, {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }
