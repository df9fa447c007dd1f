"""Sign-in events come from Django's auth signals; the receivers only hand them to the audit
service (no logic lives here)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from tenants import audit


@receiver(user_logged_in, dispatch_uid="audit_login")
def _on_login(sender: Any, user: Any, **kwargs: Any) -> None:
    audit.record(action=audit.Action.SIGN_IN, actor=user)


@receiver(user_logged_out, dispatch_uid="audit_logout")
def _on_logout(sender: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit.record(action=audit.Action.SIGN_OUT, actor=user)


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def _on_login_failed(sender: Any, credentials: dict[str, Any], **kwargs: Any) -> None:
    identifier = str(credentials.get("email") or credentials.get("username") or "")[:254]
    audit.record(action=audit.Action.SIGN_IN_FAILED, actor=None, target_label=identifier)
