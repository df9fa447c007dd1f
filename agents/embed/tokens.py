"""Short-lived signed end-user tokens. A token names one share (its id and a fingerprint of
its current key, so regenerating the key ends every token) and one end user; it is signed
with the project's secret and expires after `EMBED_TOKEN_SECONDS`. Anonymous visitors may
renew theirs (same end user) within `RENEW_DAYS` of its issue, so their history survives."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.utils import timezone

from agents.models import ChatShare
from core.exceptions import ApplicationError

SALT = "agents.embed.end-user-token"
RENEW_DAYS = 30
ANONYMOUS_PREFIX = "anon-"


class TokenRefused(ApplicationError):
    status = 401
    code = "token_refused"


@dataclass(frozen=True)
class EndUserToken:
    token: str
    end_user_id: str
    expires_at: datetime


def _fingerprint(share: ChatShare) -> str:
    return hashlib.sha256(share.key.encode()).hexdigest()[:12]


def lifetime() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "EMBED_TOKEN_SECONDS", 3600)))


def new_anonymous_id() -> str:
    return ANONYMOUS_PREFIX + secrets.token_urlsafe(18)


def token_sign(*, share: ChatShare, end_user_id: str, now: datetime | None = None) -> EndUserToken:
    issued = now or timezone.now()
    expires = issued + lifetime()
    payload = {
        "s": share.pk,
        "f": _fingerprint(share),
        "u": end_user_id,
        "i": int(issued.timestamp()),
        "e": int(expires.timestamp()),
    }
    token = signing.dumps(payload, salt=SALT, compress=False)
    return EndUserToken(token=token, end_user_id=end_user_id, expires_at=expires)


def _payload(token: str, share: ChatShare) -> dict[str, Any]:
    try:
        payload = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise TokenRefused("This visitor token is not valid: get a new one.") from None
    if (
        not isinstance(payload, dict)
        or payload.get("s") != share.pk
        or payload.get("f") != _fingerprint(share)
    ):
        raise TokenRefused("This visitor token belongs to another share: get a new one.")
    return payload


def token_verify(*, token: str, share: ChatShare) -> str:
    """The end user the token names, for this share only; refused when expired or forged."""
    payload = _payload(token, share)
    if int(payload.get("e", 0)) <= timezone.now().timestamp():
        raise TokenRefused("This visitor token has expired: get a new one.")
    return str(payload["u"])


def token_renewable(*, token: str, share: ChatShare) -> str | None:
    """An anonymous visitor's end user id from an (even expired) token of this share issued
    less than RENEW_DAYS ago; None otherwise."""
    try:
        payload = _payload(token, share)
    except TokenRefused:
        return None
    end_user = str(payload.get("u", ""))
    issued = int(payload.get("i", 0))
    fresh = timezone.now().timestamp() - issued < RENEW_DAYS * 86400
    return end_user if fresh and end_user.startswith(ANONYMOUS_PREFIX) else None
