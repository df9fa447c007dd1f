"""The http_request tool: GET, HEAD or POST to a host on the workspace's allowlist.

Every hop (the first request and each redirect) is checked the same way, in this order:

1. http or https only, no user info in the URL;
2. the host is on the workspace allowlist (`agents.outbound.selectors.host_matches`);
3. the name is resolved once, and every address it resolves to must pass the outbound guard
   (`agents.outbound.guard`: no loopback or private addresses unless
   OUTBOUND_ALLOW_PRIVATE_NETWORKS; never link-local incl. 169.254.169.254, metadata, multicast or
   reserved; IPv4 hidden in IPv6 mapped/NAT64/6to4 addresses is checked too);
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

from agents.tools.http.reading import html_to_text
from agents.tools.http.targets import check_target, resolve_public
from agents.tools.http.tool import HttpRequest

__all__ = ["HttpRequest", "check_target", "html_to_text", "resolve_public"]
