"""A fake SAML 2.0 identity provider. SAML's Web Browser SSO profile has no server-to-server
call (the browser carries the request there and the response back), so this IdP is not a
server: it reads the AuthnRequest the SP redirected the browser to (HTTP-Redirect binding),
and answers with the form fields the browser would POST to the SP's ACS URL (HTTP-POST
binding): a Response whose Assertion it signs with python3-saml's `add_sign` (RSA-SHA256),
using a key and self-signed certificate made with `cryptography` on construction.

    idp = FakeSamlIdp(entity_id="https://idp.test/saml")
    fields = idp.respond(redirect_url, email="ann@acme.test")
    client.post(idp.acs_url, fields)

Knobs for the refusals a test needs: `sign=False` (no signature), `signer=other_idp` (signed
with another key), `lifetime` (negative: already expired), `in_response_to` (override).
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from onelogin.saml2.utils import OneLogin_Saml2_Utils

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def _instant(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_certificate(
    common_name: str, *, valid_days: int = 365, valid_from_days: int = -1
) -> tuple[str, str]:
    """A fresh RSA key and self-signed certificate, both PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=valid_from_days))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM).decode()


class FakeSamlIdp:
    def __init__(self, *, entity_id: str = "https://idp.test/saml") -> None:
        self.entity_id = entity_id
        self.sso_url = "https://idp.test/saml/sso"
        self.key_pem, self.cert_pem = make_certificate("Fake SAML IdP")
        self.acs_url = ""
        self.requests: list[dict[str, str]] = []

    def read_request(self, redirect_url: str) -> dict[str, str]:
        """The AuthnRequest carried by the SP's redirect: its ID, ACS URL and issuer."""
        parts = urlsplit(redirect_url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == self.sso_url, redirect_url
        query = parse_qs(parts.query)
        xml = OneLogin_Saml2_Utils.decode_base64_and_inflate(query["SAMLRequest"][0])
        root = etree.fromstring(xml)
        issuer = root.find(f"{{{SAML}}}Issuer")
        request = {
            "id": root.get("ID", ""),
            "acs_url": root.get("AssertionConsumerServiceURL", ""),
            "issuer": issuer.text if issuer is not None and issuer.text else "",
            "relay_state": query.get("RelayState", [""])[0],
        }
        self.requests.append(request)
        self.acs_url = request["acs_url"]
        return request

    def respond(
        self,
        redirect_url: str,
        *,
        email: str,
        sign: bool = True,
        signer: FakeSamlIdp | None = None,
        lifetime: dt.timedelta = dt.timedelta(minutes=5),
        in_response_to: str | None = None,
    ) -> dict[str, str]:
        """The fields of the auto-submitting form the IdP would send the browser back with."""
        request = self.read_request(redirect_url)
        reply_to = request["id"] if in_response_to is None else in_response_to
        assertion = self.assertion(
            email=email,
            audience=request["issuer"],
            recipient=request["acs_url"],
            in_response_to=reply_to,
            lifetime=lifetime,
        )
        if sign:
            key_holder = signer or self
            assertion = OneLogin_Saml2_Utils.add_sign(
                assertion, key_holder.key_pem, key_holder.cert_pem
            )
        response = self.response(assertion, destination=request["acs_url"], in_response_to=reply_to)
        return {
            "SAMLResponse": base64.b64encode(response).decode(),
            "RelayState": request["relay_state"],
        }

    def assertion(
        self,
        *,
        email: str,
        audience: str,
        recipient: str,
        in_response_to: str,
        lifetime: dt.timedelta,
    ) -> bytes:
        now = dt.datetime.now(dt.UTC)
        issued = now if lifetime > dt.timedelta(0) else now + lifetime - dt.timedelta(minutes=5)
        until = _instant(now + lifetime)
        reply = f' InResponseTo="{in_response_to}"' if in_response_to else ""
        head = (
            f'<saml:Assertion xmlns:saml="{SAML}" ID="_a{secrets.token_hex(16)}" Version="2.0" '
            f'IssueInstant="{_instant(issued)}">'
        )
        xml = f"""{head}
<saml:Issuer>{self.entity_id}</saml:Issuer>
<saml:Subject>
<saml:NameID Format="{EMAIL_FORMAT}">{email}</saml:NameID>
<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
<saml:SubjectConfirmationData NotOnOrAfter="{until}" Recipient="{recipient}"{reply}/>
</saml:SubjectConfirmation>
</saml:Subject>
<saml:Conditions NotBefore="{_instant(issued - dt.timedelta(minutes=1))}" NotOnOrAfter="{until}">
<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>
</saml:Conditions>
<saml:AuthnStatement AuthnInstant="{_instant(issued)}" SessionIndex="_s{secrets.token_hex(8)}">
<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>
</saml:AuthnStatement>
<saml:AttributeStatement>
<saml:Attribute Name="email"><saml:AttributeValue>{email}</saml:AttributeValue></saml:Attribute>
<saml:Attribute Name="http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"><saml:AttributeValue>Ann</saml:AttributeValue></saml:Attribute>
</saml:AttributeStatement>
</saml:Assertion>"""
        return xml.encode()

    def response(self, assertion: bytes | str, *, destination: str, in_response_to: str) -> bytes:
        if isinstance(assertion, bytes):
            assertion = assertion.decode()
        if assertion.startswith("<?xml"):
            assertion = assertion.split("?>", 1)[1].lstrip()
        now = _instant(dt.datetime.now(dt.UTC))
        reply = f' InResponseTo="{in_response_to}"' if in_response_to else ""
        head = (
            f'<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" '
            f'ID="_r{secrets.token_hex(16)}" Version="2.0" IssueInstant="{now}" '
            f'Destination="{destination}"{reply}>'
        )
        xml = f"""{head}
<saml:Issuer>{self.entity_id}</saml:Issuer>
<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
{assertion}
</samlp:Response>"""
        return xml.encode()

    def settings(self) -> dict[str, Any]:
        """What the owner would paste on the settings page."""
        return {"entity_id": self.entity_id, "sso_url": self.sso_url, "x509cert": self.cert_pem}
