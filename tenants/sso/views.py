"""Sign-in pages: a workspace's sign-in settings (owners) and the SSO entry point (anyone)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST

from core import crypto
from core.exceptions import ApplicationError
from core.forms import form_add_application_error
from tenants.access import page_access
from tenants.http import AppRequest
from tenants.permissions import Access, Perm
from tenants.sso import domains, selectors, services
from tenants.sso.forms import DomainForm, IdpForm, PolicyForm, SamlForm, SsoStartForm


def _settings_url(slug: str) -> str:
    return reverse("sign_in_settings", kwargs={"workspace_slug": slug})


def _page(
    request: AppRequest,
    *,
    idp_form: IdpForm | None = None,
    policy_form: PolicyForm | None = None,
    domain_form: DomainForm | None = None,
    saml_form: SamlForm | None = None,
    status: int = 200,
) -> HttpResponse:
    access = page_access(request, Perm.SIGN_IN_MANAGE)
    sign_in = selectors.sign_in_for(workspace=access.workspace)
    secret_hint = ""
    if sign_in is not None and sign_in.oidc_client_secret_encrypted:
        try:
            secret_hint = crypto.mask(crypto.decrypt(sign_in.oidc_client_secret_encrypted))
        except ApplicationError:
            secret_hint = "(unreadable: enter it again)"  # noqa: S105 (a message)
    if idp_form is None:
        initial: dict[str, Any] = {}
        if sign_in is not None and sign_in.oidc_configured:
            initial = {
                "display_name": sign_in.display_name,
                "server_url": sign_in.oidc_server_url,
                "client_id": sign_in.oidc_client_id,
            }
        idp_form = IdpForm(initial=initial)
    if saml_form is None:
        saml_initial: dict[str, Any] = {}
        if sign_in is not None and sign_in.saml_entity_id:
            saml_initial = {
                "display_name": sign_in.display_name,
                "entity_id": sign_in.saml_entity_id,
                "sso_url": sign_in.saml_sso_url,
                "email_attribute": sign_in.saml_email_attribute,
            }
        saml_form = SamlForm(initial=saml_initial)
    if policy_form is None:
        policy_form = PolicyForm(
            initial={
                "sso_required": bool(sign_in and sign_in.sso_required),
                "mfa_required": bool(sign_in and sign_in.mfa_required),
            }
        )
    provider_id = f"workspace-{access.workspace.pk}"
    callback_url = request.build_absolute_uri(
        reverse("openid_connect_callback", kwargs={"provider_id": provider_id})
    )
    saml_urls = {
        f"saml_{name}_url": request.build_absolute_uri(
            reverse(f"saml_{name}", kwargs={"organization_slug": provider_id})
        )
        for name in ("metadata", "acs")
    }
    claims = [
        {
            "claim": claim,
            "record_name": domains.record_name(claim.domain),
            "record_value": domains.record_value(claim.token),
        }
        for claim in selectors.email_domains_for(workspace=access.workspace)
    ]
    return render(
        request,
        "tenants/sso/settings.html",
        {
            "sign_in": sign_in,
            "secret_hint": secret_hint,
            "idp_form": idp_form,
            "policy_form": policy_form,
            "domain_form": domain_form or DomainForm(),
            "saml_form": saml_form,
            "saml_cert_summary": selectors.certificate_summary(sign_in.saml_x509cert)
            if sign_in is not None and sign_in.saml_x509cert
            else "",
            **saml_urls,
            "callback_url": callback_url,
            "claims": claims,
        },
        status=status,
    )


def _idp_save(
    request: AppRequest,
    access: Access,
    form: forms.Form,
    save: Callable[[dict[str, Any]], object],
    *,
    done: str,
    form_name: str,
) -> HttpResponse:
    """Either IdP form: valid and saved, back to the page with `done`; else the page again
    with the form's errors beside its fields."""
    if form.is_valid():
        try:
            save(form.cleaned_data)
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, done)
            return redirect(_settings_url(access.workspace.slug))
    shown: dict[str, Any] = {form_name: form}  # the form again, in its place on the page
    return _page(request, status=400, **shown)


@require_http_methods(["GET", "POST"])
def sign_in_settings(request: AppRequest) -> HttpResponse:
    """The IdP form posts here; the page shows the domains and requirements too."""
    access = page_access(request, Perm.SIGN_IN_MANAGE)
    if request.method != "POST":
        return _page(request)
    return _idp_save(
        request,
        access,
        IdpForm(request.POST),
        lambda data: services.sign_in_idp_update(
            access=access,
            display_name=data["display_name"],
            server_url=data["server_url"],
            client_id=data["client_id"],
            client_secret=data["client_secret"],
        ),
        done="Identity provider saved.",
        form_name="idp_form",
    )


@require_POST
def sign_in_saml(request: AppRequest) -> HttpResponse:
    """The SAML form posts here: saving it makes the workspace's IdP a SAML one."""
    access = page_access(request, Perm.SIGN_IN_MANAGE)
    return _idp_save(
        request,
        access,
        SamlForm(request.POST),
        lambda data: services.sign_in_saml_update(
            access=access,
            display_name=data["display_name"],
            entity_id=data["entity_id"],
            sso_url=data["sso_url"],
            x509cert=data["x509cert"],
            email_attribute=data["email_attribute"],
        ),
        done="SAML identity provider saved.",
        form_name="saml_form",
    )


@require_POST
def sign_in_idp_remove(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.SIGN_IN_MANAGE)
    services.sign_in_idp_remove(access=access)
    messages.success(request, "Identity provider removed. Members sign in with passwords.")
    return redirect(_settings_url(access.workspace.slug))


@require_POST
def sign_in_policy(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.SIGN_IN_MANAGE)
    form = PolicyForm(request.POST)
    if form.is_valid():
        try:
            services.sign_in_policy_update(
                access=access,
                sso_required=form.cleaned_data["sso_required"],
                mfa_required=form.cleaned_data["mfa_required"],
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, "Sign-in requirements saved.")
            return redirect(_settings_url(access.workspace.slug))
    return _page(request, policy_form=form, status=400)


@require_POST
def email_domain_claim(request: AppRequest) -> HttpResponse:
    access = page_access(request, Perm.SIGN_IN_MANAGE)
    form = DomainForm(request.POST)
    if form.is_valid():
        try:
            claim = services.email_domain_claim(access=access, domain=form.cleaned_data["domain"])
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(
                request, f"{claim.domain} claimed: publish its TXT record, then check it."
            )
            return redirect(_settings_url(access.workspace.slug))
    return _page(request, domain_form=form, status=400)


@require_POST
def email_domain_verify(request: AppRequest, domain_id: int) -> HttpResponse:
    access = page_access(request, Perm.SIGN_IN_MANAGE)
    try:
        claim = services.email_domain_verify(access=access, domain_id=domain_id)
    except ApplicationError as exc:
        if exc.status == 404:
            raise
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{claim.domain} is verified.")
    return redirect(_settings_url(access.workspace.slug))


@require_POST
def email_domain_remove(request: AppRequest, domain_id: int) -> HttpResponse:
    access = page_access(request, Perm.SIGN_IN_MANAGE)
    services.email_domain_remove(access=access, domain_id=domain_id)
    messages.success(request, "Domain removed.")
    return redirect(_settings_url(access.workspace.slug))


@require_http_methods(["GET", "POST"])
def sso_start(request: AppRequest) -> HttpResponse:
    """Sign in with SSO: the work email's verified domain names the workspace whose IdP signs
    the person in. Reveals only whether a domain signs in with SSO (as such pages do)."""
    form = SsoStartForm(request.POST or None, initial={"email": request.GET.get("email", "")})
    status = 400 if request.method == "POST" else 200
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        sign_in = selectors.sso_sign_in_for_email(email=email)
        if sign_in is None:
            form.add_error("email", "No workspace signs in people of this domain with SSO.")
        else:
            if sign_in.kind == "saml":
                login = reverse("saml_login", kwargs={"organization_slug": sign_in.provider_id})
            else:
                login = reverse("openid_connect_login", kwargs={"provider_id": sign_in.provider_id})
            dashboard = reverse(
                "workspace_dashboard", kwargs={"workspace_slug": sign_in.workspace.slug}
            )
            # allauth's confirmation page (its CSP allows the IdP: tenants/sso/middleware.py)
            return redirect(f"{login}?{urlencode({'process': 'login', 'next': dashboard})}")
    return render(request, "tenants/sso/start.html", {"form": form}, status=status)
