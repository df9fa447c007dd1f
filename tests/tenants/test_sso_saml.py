"""Workspace single sign-on over SAML 2.0 (docs/sso.md): the owner enters the IdP's entity ID,
sign-on URL and signing certificate; people of a verified domain sign in through allauth's SAML
provider (the real flow: our SP's AuthnRequest over the HTTP-Redirect binding, a Response with
an Assertion signed by the fake IdP of tests/fakes/saml_idp.py, POSTed to our ACS URL)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from allauth.socialaccount.models import SocialAccount
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from privacy import services as privacy_services
from tenants.models import AuditEvent, EmailDomain, Membership, Role, WorkspaceSignIn
from tests.fakes.saml_idp import FakeSamlIdp, make_certificate
from tests.helpers.personas import PASSWORD, World, logged_in, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def idp() -> FakeSamlIdp:
    return FakeSamlIdp()


def _url(name: str, **kwargs: Any) -> str:
    return reverse(name, kwargs={"workspace_slug": "alpha", **kwargs})


def configure(world: World, idp: FakeSamlIdp, *, required: bool = False) -> WorkspaceSignIn:
    """Alpha's IdP is the fake SAML IdP, alpha.test is verified (through the owner's page)."""
    owner = logged_in(world.owner)
    response = owner.post(_url("sign_in_saml"), {"display_name": "Alpha SAML", **idp.settings()})
    assert response.status_code == 302, response.content.decode()
    EmailDomain.objects.create(
        workspace=world.workspace_a, domain="alpha.test", token="t", verified_at=timezone.now()
    )
    if required:
        response = owner.post(_url("sign_in_policy"), {"sso_required": "on"})
        assert response.status_code == 302
    return WorkspaceSignIn.objects.get(workspace=world.workspace_a)


def start(client: Client, idp: FakeSamlIdp, email: str) -> str:
    """Our SSO page, then allauth's confirmation, which redirects the browser to the IdP.
    Returns that redirect (carrying the AuthnRequest)."""
    begin = client.post(reverse("sso_start"), {"email": email})
    assert begin.status_code == 302, begin.content.decode()
    confirm = client.get(begin["Location"])
    assert confirm.status_code == 200
    assert "https://idp.test" in confirm["Content-Security-Policy"]
    to_idp = client.post(begin["Location"])
    assert to_idp.status_code == 302
    location: str = to_idp["Location"]
    assert location.startswith(f"{idp.sso_url}?SAMLRequest=")
    return location


def post_to_acs(client: Client, idp: FakeSamlIdp, fields: dict[str, str]) -> Any:
    """The browser's auto-submitted form to the ACS, and allauth's redirect to finish."""
    acs = client.post(idp.acs_url, fields)
    assert acs.status_code == 302
    return client.get(acs["Location"])


def browser() -> Client:
    """A client that sends a Host header, as browsers do (python3-saml reads it)."""
    return Client(HTTP_HOST="testserver")


def nothing_touched(email: str) -> bool:
    return (
        not User.objects.filter(email__iexact=email).exists()
        and not SocialAccount.objects.exists()
        and not AuditEvent.objects.filter(action="member.joined_by_sso").exists()
    )


# --- Settings page ------------------------------------------------------------------------


def test_the_owner_sets_up_saml_and_sees_the_urls_to_register(
    world: World, idp: FakeSamlIdp
) -> None:
    sign_in = configure(world, idp)
    assert sign_in.kind == "saml"
    assert sign_in.saml_configured
    assert not sign_in.oidc_configured
    page = logged_in(world.owner).get(_url("sign_in_settings")).content.decode()
    provider = f"workspace-{world.workspace_a.pk}"
    assert f"http://testserver/accounts/saml/{provider}/metadata/" in page
    assert f"http://testserver/accounts/saml/{provider}/acs/" in page
    assert "Stored certificate: CN=Fake SAML IdP" in page
    event = AuditEvent.objects.get(action="sign_in.idp_updated")
    assert event.metadata["kind"] == "saml"

    # The SP metadata the IdP can read names the ACS URL.
    metadata = browser().get(f"/accounts/saml/{provider}/metadata/")
    assert metadata.status_code == 200
    assert f"http://testserver/accounts/saml/{provider}/acs/" in metadata.content.decode()

    # Saving again without a certificate keeps the stored one.
    response = logged_in(world.owner).post(
        _url("sign_in_saml"),
        {"display_name": "Renamed", "entity_id": idp.entity_id, "sso_url": idp.sso_url},
    )
    assert response.status_code == 302
    sign_in.refresh_from_db()
    assert sign_in.display_name == "Renamed"
    assert sign_in.saml_x509cert == idp.cert_pem


@pytest.mark.parametrize(
    ("certificate", "message"),
    [
        ("not a certificate", "This is not a PEM certificate"),
        ("expired", "This certificate expired on"),
        ("", "Paste your identity provider&#x27;s signing certificate."),
    ],
)
def test_a_bad_certificate_is_refused_beside_the_field(
    world: World, idp: FakeSamlIdp, certificate: str, message: str
) -> None:
    if certificate == "expired":
        certificate = make_certificate("Old IdP", valid_days=-1, valid_from_days=-30)[1]
    response = logged_in(world.owner).post(
        _url("sign_in_saml"), {**idp.settings(), "display_name": "x", "x509cert": certificate}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not WorkspaceSignIn.objects.filter(workspace=world.workspace_a).exists()


def test_a_bare_base64_certificate_is_accepted(world: World, idp: FakeSamlIdp) -> None:
    body = "".join(line for line in idp.cert_pem.splitlines() if "CERTIFICATE" not in line)
    response = logged_in(world.owner).post(
        _url("sign_in_saml"), {**idp.settings(), "display_name": "x", "x509cert": body}
    )
    assert response.status_code == 302
    assert WorkspaceSignIn.objects.get(workspace=world.workspace_a).saml_x509cert == idp.cert_pem


# --- The SAML flow --------------------------------------------------------------------------


def test_a_new_person_of_a_verified_domain_signs_in_through_saml_and_joins(
    world: World, idp: FakeSamlIdp
) -> None:
    configure(world, idp)
    client = browser()
    redirect = start(client, idp, "new.hire@alpha.test")

    response = post_to_acs(client, idp, idp.respond(redirect, email="new.hire@alpha.test"))

    assert response.status_code == 302, response.content.decode()
    assert response["Location"] == "/w/alpha/"
    assert idp.acs_url == f"http://testserver/accounts/saml/workspace-{world.workspace_a.pk}/acs/"
    user = User.objects.get(email="new.hire@alpha.test")
    assert not user.has_usable_password()
    assert Membership.objects.get(user=user, workspace=world.workspace_a).role == Role.MEMBER
    account = SocialAccount.objects.get(user=user)
    assert account.provider == f"workspace-{world.workspace_a.pk}"
    assert account.uid == "new.hire@alpha.test"
    assert AuditEvent.objects.filter(action="member.joined_by_sso", actor=user).exists()
    assert client.get("/w/alpha/").status_code == 200


def test_an_existing_member_signs_in_through_saml_with_sso_required(
    world: World, idp: FakeSamlIdp
) -> None:
    configure(world, idp, required=True)
    client = browser()
    client.post(reverse("account_login"), {"login": "member@alpha.test", "password": PASSWORD})
    assert client.get("/w/alpha/").status_code == 403  # a password session is not enough

    redirect = start(client, idp, "member@alpha.test")
    response = post_to_acs(client, idp, idp.respond(redirect, email="member@alpha.test"))

    assert response.status_code == 302
    assert User.objects.filter(email__iexact="member@alpha.test").count() == 1
    assert SocialAccount.objects.get().user == world.member
    assert client.get("/w/alpha/").status_code == 200


def test_erasing_an_account_deletes_its_saml_identity(world: World, idp: FakeSamlIdp) -> None:
    configure(world, idp)
    client = browser()
    redirect = start(client, idp, "member@alpha.test")
    assert post_to_acs(client, idp, idp.respond(redirect, email="member@alpha.test")).status_code
    assert SocialAccount.objects.get().uid == "member@alpha.test"  # the NameID: an address

    privacy_services.account_delete(user=world.member, password=PASSWORD)

    assert not SocialAccount.objects.exists()


@pytest.mark.parametrize(
    ("problem", "reason"),
    [
        ("unsigned", "The Assertion of the Response is not signed"),
        ("signed by another key", "Signature validation failed"),
    ],
)
def test_an_unsigned_or_wrongly_signed_response_is_refused(
    world: World, idp: FakeSamlIdp, problem: str, reason: str, caplog: Any
) -> None:
    configure(world, idp)
    client = browser()
    redirect = start(client, idp, "new.hire@alpha.test")
    if problem == "unsigned":
        fields = idp.respond(redirect, email="new.hire@alpha.test", sign=False)
    else:
        impostor = FakeSamlIdp(entity_id=idp.entity_id)
        fields = idp.respond(redirect, email="new.hire@alpha.test", signer=impostor)

    response = post_to_acs(client, idp, fields)

    assert response.status_code == 401  # allauth's "sign-in failed" page
    assert reason in caplog.text
    assert "_auth_user_id" not in client.session
    assert nothing_touched("new.hire@alpha.test")


def test_a_response_for_another_domains_address_is_refused(world: World, idp: FakeSamlIdp) -> None:
    configure(world, idp)
    client = browser()
    redirect = start(client, idp, "someone@alpha.test")

    response = post_to_acs(client, idp, idp.respond(redirect, email="outsider@bravo.test"))

    assert response.status_code == 403
    assert "not in an email domain Alpha Inc has verified" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert not SocialAccount.objects.exists()
    assert not Membership.objects.filter(user=world.outsider, workspace=world.workspace_a).exists()


def test_an_expired_response_is_refused(world: World, idp: FakeSamlIdp, caplog: Any) -> None:
    configure(world, idp)
    client = browser()
    redirect = start(client, idp, "new.hire@alpha.test")
    fields = idp.respond(redirect, email="new.hire@alpha.test", lifetime=dt.timedelta(minutes=-10))

    response = post_to_acs(client, idp, fields)

    assert response.status_code == 401
    assert "Could not validate timestamp: expired" in caplog.text
    assert "_auth_user_id" not in client.session
    assert nothing_touched("new.hire@alpha.test")


def test_a_replayed_response_is_refused(world: World, idp: FakeSamlIdp) -> None:
    configure(world, idp)
    client = browser()
    redirect = start(client, idp, "new.hire@alpha.test")
    fields = idp.respond(redirect, email="new.hire@alpha.test")
    assert post_to_acs(client, idp, fields).status_code == 302
    user = User.objects.get(email="new.hire@alpha.test")

    # Captured and replayed in another browser: that session never asked for it.
    thief = browser()
    assert post_to_acs(thief, idp, fields).status_code == 403
    assert "_auth_user_id" not in thief.session
    # Replayed in the same browser after sign-out: its request was answered already.
    client.post(reverse("account_logout"))
    assert post_to_acs(client, idp, fields).status_code == 403
    assert "_auth_user_id" not in client.session
    assert SocialAccount.objects.filter(user=user).count() == 1
    assert AuditEvent.objects.filter(action="member.joined_by_sso").count() == 1


def test_an_idp_initiated_response_is_refused(world: World, idp: FakeSamlIdp, caplog: Any) -> None:
    configure(world, idp)
    client = browser()
    redirect = start(client, idp, "new.hire@alpha.test")
    fields = idp.respond(redirect, email="new.hire@alpha.test", in_response_to="")

    response = post_to_acs(client, idp, fields)

    assert response.status_code == 401
    assert "IdP initiated SSO rejected" in caplog.text
    assert "_auth_user_id" not in client.session
    assert nothing_touched("new.hire@alpha.test")


def test_saml_endpoints_of_a_workspace_without_saml_are_not_found(world: World) -> None:
    for slug in (f"workspace-{world.workspace_a.pk}", f"workspace-{world.workspace_b.pk}", "x"):
        assert Client().get(f"/accounts/saml/{slug}/metadata/").status_code == 404
        assert Client().get(f"/accounts/saml/{slug}/login/").status_code == 404


# --- Who may open the pages -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_saml_form_is_closed_to_anonymous_outsiders_viewers_members_and_admins(
    world: World, idp: FakeSamlIdp, method: str
) -> None:
    url = _url("sign_in_saml")
    data = {"display_name": "x", **idp.settings()}
    anonymous = getattr(Client(), method)(url, data)
    assert anonymous.status_code in {302, 405}
    if method == "get":
        assert logged_in(world.owner).get(url).status_code == 405
        return
    assert reverse("account_login") in anonymous["Location"]
    assert logged_in(world.outsider).post(url, data).status_code == 404
    for role in (Role.VIEWER, Role.MEMBER, Role.ADMIN):
        person = make_user(f"{role}@alpha.test")
        Membership.objects.update_or_create(
            user=person, workspace=world.workspace_a, defaults={"role": role}
        )
        assert logged_in(person).post(url, data).status_code == 403, role
    assert not WorkspaceSignIn.objects.filter(workspace=world.workspace_a).exists()
