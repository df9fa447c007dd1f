from __future__ import annotations

from django import forms


class IdpForm(forms.Form):
    display_name = forms.CharField(
        max_length=80,
        label="Button label",
        initial="Single sign-on",
        help_text="What members see on the sign-in button, such as “Okta” or “Acme SSO”.",
    )
    server_url = forms.URLField(
        max_length=500,
        label="Issuer URL",
        assume_scheme="https",
        help_text="Your identity provider's issuer, or its discovery document "
        "(…/.well-known/openid-configuration).",
        widget=forms.URLInput(attrs={"placeholder": "https://login.example.com/realms/acme"}),
    )
    client_id = forms.CharField(max_length=255, label="Client ID")
    client_secret = forms.CharField(
        max_length=1000,
        required=False,
        label="Client secret",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )


class SamlForm(forms.Form):
    display_name = forms.CharField(
        max_length=80,
        label="Button label",
        initial="Single sign-on",
        help_text="What members see on the sign-in button, such as “Okta” or “Acme SSO”.",
    )
    entity_id = forms.CharField(
        max_length=500,
        label="IdP entity ID",
        help_text="Your identity provider's entity ID (also called issuer), from its metadata.",
        widget=forms.TextInput(attrs={"placeholder": "http://www.okta.com/exk…"}),
    )
    sso_url = forms.URLField(
        max_length=500,
        label="IdP single sign-on URL",
        assume_scheme="https",
        help_text="Where people are sent to sign in (HTTP-Redirect binding).",
        widget=forms.URLInput(attrs={"placeholder": "https://login.example.com/app/sso/saml"}),
    )
    x509cert = forms.CharField(
        max_length=10000,
        required=False,
        label="IdP signing certificate (PEM)",
        help_text="-----BEGIN CERTIFICATE----- … Leave blank to keep the stored one.",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
    )
    email_attribute = forms.CharField(
        max_length=255,
        required=False,
        label="Email attribute",
        help_text="The attribute that carries the email, if not a standard one or the NameID.",
    )


class PolicyForm(forms.Form):
    sso_required = forms.BooleanField(
        required=False,
        label="Require single sign-on",
        help_text="Members whose email is in a verified domain must sign in through your "
        "identity provider; a password session is turned away.",
    )
    mfa_required = forms.BooleanField(
        required=False,
        label="Require two-factor authentication",
        help_text="Members without it are sent to set it up before they can open this "
        "workspace. API keys are not affected.",
    )


class DomainForm(forms.Form):
    domain = forms.CharField(
        max_length=253,
        label="Email domain",
        widget=forms.TextInput(
            attrs={"placeholder": "example.com", "autocapitalize": "none", "spellcheck": "false"}
        ),
    )


class SsoStartForm(forms.Form):
    email = forms.EmailField(
        label="Work email",
        widget=forms.EmailInput(attrs={"autocomplete": "email", "placeholder": "you@example.com"}),
    )
