"""Staff open the back-office only with two-factor on, where `STAFF_REQUIRE_MFA` is set (the
production default). A staff member without it is sent to set it up; once it is on, allauth
asks for a code at every sign-in, so every staff session in /admin/ passed it."""

from __future__ import annotations

from collections.abc import Callable

from allauth.mfa.models import Authenticator
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode


class StaffMfaMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.admin_prefix = ""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.STAFF_REQUIRE_MFA and self._needs_setup(request):
            # The recovery-codes page links back (templates/mfa/recovery_codes/index.html).
            request.session["mfa_setup_next"] = request.get_full_path()
            setup = reverse("mfa_activate_totp")
            return HttpResponseRedirect(f"{setup}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)

    def _needs_setup(self, request: HttpRequest) -> bool:
        if not self.admin_prefix:
            self.admin_prefix = reverse("admin:index")
        user = request.user
        return (
            request.path.startswith(self.admin_prefix)
            and user.is_authenticated
            and user.is_staff
            and not is_mfa_enabled(user, [Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN])
        )
