"""Workspace single sign-on (docs/sso.md): an owner sets up the workspace's OpenID Connect IdP
and verifies an email domain by DNS; people of that domain sign in through the IdP (the real
allauth flow, against a loopback OpenID Connect provider and a loopback DNS server); with SSO
required, a password session is turned away from the workspace."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from core import crypto
from tenants.models import AuditEvent, EmailDomain, Membership, Role, WorkspaceSignIn
from tenants.sso import domains
from tests.fakes.dns_server import FakeDns
from tests.fakes.oidc_provider import FakeOidcProvider
from tests.helpers.personas import PASSWORD, World, key_client, logged_in, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def idp(settings: Any) -> Iterator[FakeOidcProvider]:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the fake IdP listens on 127.0.0.1
    with FakeOidcProvider(client_id="alpha-app", client_secret="alpha-secret-9876") as fake:
        yield fake


@pytest.fixture
def fake_dns(settings: Any) -> Iterator[FakeDns]:
    with FakeDns() as fake:
        settings.SSO_DNS_NAMESERVERS = [fake.nameserver]
        settings.SSO_DNS_TIMEOUT_SECONDS = 2.0
        yield fake


def _url(name: str, **kwargs: Any) -> str:
    return reverse(name, kwargs={"workspace_slug": "alpha", **kwargs})


def configure(world: World, idp: FakeOidcProvider, *, required: bool = False) -> WorkspaceSignIn:
    """Alpha's IdP is the fake, alpha.test is verified (as the owner would, through the page)."""
    owner = logged_in(world.owner)
    response = owner.post(
        _url("sign_in_settings"),
        {
            "display_name": "Alpha SSO",
            "server_url": idp.issuer,
            "client_id": idp.client_id,
            "client_secret": idp.client_secret,
        },
    )
    assert response.status_code == 302, response.content.decode()
    EmailDomain.objects.create(
        workspace=world.workspace_a, domain="alpha.test", token="t", verified_at=timezone.now()
    )
    if required:
        response = owner.post(_url("sign_in_policy"), {"sso_required": "on"})
        assert response.status_code == 302
    return WorkspaceSignIn.objects.get(workspace=world.workspace_a)


def sso_sign_in(client: Client, idp: FakeOidcProvider, email: str) -> Any:
    """What a browser does: our SSO page sends it to the IdP, the IdP (over HTTP) sends it back
    with a code, and our callback finishes the sign-in. Returns the callback's response."""
    start = client.post(reverse("sso_start"), {"email": email})
    assert start.status_code == 302, start.content.decode()
    confirm = client.get(start["Location"])
    assert confirm.status_code == 200
    # The confirmation's form is redirected on to the IdP: its policy allows the IdP's origin.
    assert idp.issuer in confirm["Content-Security-Policy"]
    start = client.post(start["Location"])
    assert start["Location"].startswith(f"{idp.issuer}/authorize?")
    at_idp = httpx2.get(start["Location"], follow_redirects=False)
    assert at_idp.status_code == 302
    return client.get(at_idp.headers["location"])


# --- Settings page ------------------------------------------------------------------------


def test_the_client_secret_is_stored_encrypted_and_never_shown_in_full(
    world: World, idp: FakeOidcProvider
) -> None:
    sign_in = configure(world, idp)
    assert idp.client_secret not in sign_in.oidc_client_secret_encrypted
    assert crypto.decrypt(sign_in.oidc_client_secret_encrypted) == idp.client_secret

    page = logged_in(world.owner).get(_url("sign_in_settings")).content.decode()
    assert idp.client_secret not in page
    assert "••••9876" in page
    assert f"/accounts/oidc/workspace-{world.workspace_a.pk}/login/callback/" in page

    # Saving again without a secret keeps the stored one.
    logged_in(world.owner).post(
        _url("sign_in_settings"),
        {"display_name": "Renamed", "server_url": idp.issuer, "client_id": idp.client_id},
    )
    sign_in.refresh_from_db()
    assert sign_in.display_name == "Renamed"
    assert crypto.decrypt(sign_in.oidc_client_secret_encrypted) == idp.client_secret
    assert AuditEvent.objects.filter(action="sign_in.idp_updated").count() == 2


def test_an_idp_on_a_private_address_is_refused_by_the_outbound_guard(
    world: World, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    response = logged_in(world.owner).post(
        _url("sign_in_settings"),
        {
            "display_name": "x",
            "server_url": "http://127.0.0.1:9/realms/x",
            "client_id": "c",
            "client_secret": "s",
        },
    )
    assert response.status_code == 400
    assert "private or loopback address" in response.content.decode()
    assert not WorkspaceSignIn.objects.filter(
        workspace=world.workspace_a, oidc_client_id="c"
    ).exists()


def test_sso_cannot_be_required_without_an_idp_and_a_verified_domain(world: World) -> None:
    response = logged_in(world.owner).post(_url("sign_in_policy"), {"sso_required": "on"})
    assert response.status_code == 400
    assert "Set up an identity provider first." in response.content.decode()


# --- Domains --------------------------------------------------------------------------------


def test_a_domain_is_verified_by_its_dns_txt_record(world: World, fake_dns: FakeDns) -> None:
    owner = logged_in(world.owner)
    assert owner.post(_url("email_domain_claim"), {"domain": "Alpha.TEST"}).status_code == 302
    claim = EmailDomain.objects.get(workspace=world.workspace_a)
    assert claim.domain == "alpha.test"
    page = owner.get(_url("sign_in_settings")).content.decode()
    assert domains.record_name("alpha.test") in page
    assert domains.record_value(claim.token) in page

    # Not published yet: not verified, and the page says why.
    owner.post(_url("email_domain_verify", domain_id=claim.pk))
    claim.refresh_from_db()
    assert claim.verified_at is None
    assert "No TXT record" in claim.last_error
    assert fake_dns.questions == ["_agentmarket-verify.alpha.test"]

    # Someone else's value does not count; the claim's own does.
    fake_dns.txt["_agentmarket-verify.alpha.test"] = ["agentmarket-verify=someone-else"]
    owner.post(_url("email_domain_verify", domain_id=claim.pk))
    claim.refresh_from_db()
    assert claim.verified_at is None
    fake_dns.txt["_agentmarket-verify.alpha.test"] = [
        "v=spf1 -all",
        domains.record_value(claim.token),
    ]
    response = owner.post(_url("email_domain_verify", domain_id=claim.pk), follow=True)
    claim.refresh_from_db()
    assert claim.verified_at is not None
    assert "alpha.test is verified." in response.content.decode()


def test_a_domain_verified_by_one_workspace_cannot_be_verified_by_another(
    world: World, fake_dns: FakeDns
) -> None:
    EmailDomain.objects.create(
        workspace=world.workspace_a, domain="shared.test", token="a", verified_at=timezone.now()
    )
    bravo = logged_in(world.outsider)
    bravo.post(
        reverse("email_domain_claim", kwargs={"workspace_slug": "bravo"}), {"domain": "shared.test"}
    )
    claim = EmailDomain.objects.get(workspace=world.workspace_b)
    fake_dns.txt["_agentmarket-verify.shared.test"] = [domains.record_value(claim.token)]
    response = bravo.post(
        reverse("email_domain_verify", kwargs={"workspace_slug": "bravo", "domain_id": claim.pk}),
        follow=True,
    )
    claim.refresh_from_db()
    assert claim.verified_at is None
    assert "verified by another workspace" in response.content.decode()


def test_a_domain_that_is_not_a_domain_is_refused_beside_the_field(world: World) -> None:
    response = logged_in(world.owner).post(_url("email_domain_claim"), {"domain": "not a domain"})
    assert response.status_code == 400
    assert "is not a domain name" in response.content.decode()


# --- The OpenID Connect flow ----------------------------------------------------------------


def test_a_new_person_of_a_verified_domain_signs_in_through_the_idp_and_joins(
    world: World, idp: FakeOidcProvider
) -> None:
    configure(world, idp)
    idp.user = {"sub": "idp-42", "email": "new.hire@alpha.test", "name": "New Hire"}
    client = Client()

    response = sso_sign_in(client, idp, "new.hire@alpha.test")

    assert response.status_code == 302
    assert response["Location"] == "/w/alpha/"
    assert idp.token_errors == []
    assert ("GET", "/.well-known/openid-configuration") in idp.requests
    assert ("POST", "/token") in idp.requests
    user = User.objects.get(email="new.hire@alpha.test")
    assert user.full_name == "New Hire"
    assert not user.has_usable_password()
    assert EmailAddress.objects.get(user=user).verified
    assert Membership.objects.get(user=user, workspace=world.workspace_a).role == Role.MEMBER
    assert SocialAccount.objects.get(user=user).provider == f"workspace-{world.workspace_a.pk}"
    assert AuditEvent.objects.filter(action="member.joined_by_sso", actor=user).exists()
    assert client.get("/w/alpha/").status_code == 200


def test_an_existing_account_of_the_domain_is_connected_not_duplicated(
    world: World, idp: FakeOidcProvider
) -> None:
    configure(world, idp)
    idp.user = {"sub": "idp-member", "email": "member@alpha.test", "email_verified": True}
    client = Client()
    response = sso_sign_in(client, idp, "member@alpha.test")
    assert response.status_code == 302
    assert User.objects.filter(email__iexact="member@alpha.test").count() == 1
    assert SocialAccount.objects.get(uid="idp-member").user == world.member
    assert (
        Membership.objects.get(user=world.member, workspace=world.workspace_a).role == Role.MEMBER
    )
    assert client.get("/w/alpha/").status_code == 200


def test_an_idp_cannot_sign_in_an_address_outside_its_workspaces_verified_domains(
    world: World, idp: FakeOidcProvider
) -> None:
    configure(world, idp)
    # The IdP claims to be Bravo's owner (a domain Alpha never verified).
    idp.user = {"sub": "evil", "email": "outsider@bravo.test", "email_verified": True}
    client = Client()
    response = sso_sign_in(client, idp, "someone@alpha.test")
    assert response.status_code == 403
    assert "not in an email domain Alpha Inc has verified" in response.content.decode()
    assert not SocialAccount.objects.filter(uid="evil").exists()
    assert "_auth_user_id" not in client.session
    assert not Membership.objects.filter(user=world.outsider, workspace=world.workspace_a).exists()


def test_a_wrong_client_secret_fails_the_sign_in_without_a_server_error(
    world: World, idp: FakeOidcProvider
) -> None:
    configure(world, idp)
    idp.client_secret = "rotated-at-the-idp"
    idp.user = {"sub": "idp-43", "email": "new@alpha.test"}
    client = Client()
    response = sso_sign_in(client, idp, "new@alpha.test")
    assert response.status_code < 500
    assert idp.token_errors == ["invalid_client"]
    assert not User.objects.filter(email="new@alpha.test").exists()


def test_the_sso_page_says_when_no_workspace_signs_in_a_domain(world: World) -> None:
    response = Client().post(reverse("sso_start"), {"email": "someone@nowhere.test"})
    assert response.status_code == 400
    assert "No workspace signs in people of this domain with SSO." in response.content.decode()


def test_the_sign_in_start_says_when_the_idp_is_down(world: World, settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    with FakeOidcProvider() as gone:
        issuer = gone.issuer
    WorkspaceSignIn.objects.create(
        workspace=world.workspace_a,
        oidc_server_url=issuer,
        oidc_client_id="c",
        oidc_client_secret_encrypted=crypto.encrypt("s"),
    )
    EmailDomain.objects.create(
        workspace=world.workspace_a, domain="alpha.test", token="t", verified_at=timezone.now()
    )
    client = Client()
    start = client.post(reverse("sso_start"), {"email": "a@alpha.test"})
    response = client.post(start["Location"])
    assert response.status_code == 503
    assert "cannot be reached right now" in response.content.decode()


# --- SSO required ---------------------------------------------------------------------------


def test_with_sso_required_a_password_session_is_sent_to_sso(
    world: World, idp: FakeOidcProvider
) -> None:
    configure(world, idp, required=True)
    client = Client()
    assert (
        client.post(
            reverse("account_login"), {"login": "member@alpha.test", "password": PASSWORD}
        ).status_code
        == 302
    )

    page = client.get("/w/alpha/")
    assert page.status_code == 403
    body = page.content.decode()
    assert "Alpha Inc requires single sign-on" in body
    assert "Continue with Alpha SSO" in body
    api = client.get("/api/v1/workspace/", HTTP_X_WORKSPACE="alpha")
    assert api.status_code == 403
    assert "single sign-on" in api.content.decode()

    # Through the IdP, the same person gets in.
    idp.user = {"sub": "idp-member", "email": "member@alpha.test"}
    sso_sign_in(client, idp, "member@alpha.test")
    assert client.get("/w/alpha/").status_code == 200


def test_sso_required_leaves_addresses_outside_the_domain_and_api_keys_alone(
    world: World, idp: FakeOidcProvider
) -> None:
    configure(world, idp, required=True)
    contractor = make_user("contractor@elsewhere.test")
    Membership.objects.create(user=contractor, workspace=world.workspace_a, role=Role.MEMBER)
    client = Client()
    client.post(reverse("account_login"), {"login": contractor.email, "password": PASSWORD})
    assert client.get("/w/alpha/").status_code == 200
    assert key_client(world, ["workspace.view"]).get("/api/v1/workspace/").status_code == 200


# --- Who may open the pages -----------------------------------------------------------------

OWNER_ONLY: list[tuple[str, str, dict[str, Any]]] = [
    ("get", "sign_in_settings", {}),
    ("post", "sign_in_settings", {}),
    ("post", "sign_in_idp_remove", {}),
    ("post", "sign_in_policy", {}),
    ("post", "email_domain_claim", {}),
]


@pytest.mark.parametrize(("method", "name", "kwargs"), OWNER_ONLY)
def test_sign_in_pages_are_closed_to_anonymous_outsiders_viewers_members_and_admins(
    world: World, method: str, name: str, kwargs: dict[str, Any]
) -> None:
    url = _url(name, **kwargs)
    anonymous = getattr(Client(), method)(url)
    assert anonymous.status_code == 302
    assert reverse("account_login") in anonymous["Location"]
    assert getattr(logged_in(world.outsider), method)(url).status_code == 404
    for role in (Role.VIEWER, Role.MEMBER, Role.ADMIN):
        person = make_user(f"{role}@alpha.test")
        Membership.objects.update_or_create(
            user=person, workspace=world.workspace_a, defaults={"role": role}
        )
        assert getattr(logged_in(person), method)(url).status_code == 403, role
    assert not WorkspaceSignIn.objects.filter(workspace=world.workspace_a).exists()


def test_another_workspaces_domain_cannot_be_checked_or_removed(world: World) -> None:
    claim = EmailDomain.objects.create(workspace=world.workspace_b, domain="bravo.test", token="b")
    owner = logged_in(world.owner)
    for name in ("email_domain_verify", "email_domain_remove"):
        assert owner.post(_url(name, domain_id=claim.pk)).status_code == 404
    assert EmailDomain.objects.filter(pk=claim.pk).exists()


def test_removing_the_idp_or_the_last_verified_domain_turns_the_sso_requirement_off(
    world: World, idp: FakeOidcProvider
) -> None:
    sign_in = configure(world, idp, required=True)
    assert sign_in.sso_required
    # The SSO requirement applies to owners of the domain too: alpha's owner (at alpha.test)
    # now needs SSO; a second owner with an address elsewhere acts here.
    assert logged_in(world.owner).get(_url("sign_in_settings")).status_code == 403
    boss = make_user("boss@elsewhere.test")
    Membership.objects.create(user=boss, workspace=world.workspace_a, role=Role.OWNER)
    owner = Client()
    owner.post(reverse("account_login"), {"login": boss.email, "password": PASSWORD})
    claim = EmailDomain.objects.get(workspace=world.workspace_a)
    owner.post(_url("email_domain_remove", domain_id=claim.pk))
    sign_in.refresh_from_db()
    assert not sign_in.sso_required

    configure(world, idp, required=True)
    owner.post(_url("sign_in_idp_remove"))
    sign_in.refresh_from_db()
    assert not sign_in.sso_required
    assert sign_in.oidc_client_secret_encrypted == ""
    assert not sign_in.oidc_configured
    assert AuditEvent.objects.filter(action="sign_in.idp_removed").exists()


def test_the_sign_in_rules_cost_no_query_without_requirements_and_one_with_two_factor(
    world: World,
) -> None:
    client = logged_in(world.member)
    client.get("/w/alpha/members/")  # warm: session, caches

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/w/alpha/members/").status_code == 200
        return len(queries)

    before = count()
    WorkspaceSignIn.objects.create(workspace=world.workspace_a)
    assert count() == before  # the row comes joined with the membership
    WorkspaceSignIn.objects.filter(workspace=world.workspace_a).update(mfa_required=True)
    Authenticator.objects.create(
        user=world.member, type=Authenticator.Type.TOTP, data={"secret": crypto.encrypt("x")}
    )
    assert count() == before + 1  # is two-factor on?
