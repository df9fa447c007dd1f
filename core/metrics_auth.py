"""Who may read `/metrics`: the holder of METRICS_TOKEN (a bearer token), compared in constant
time. With no token configured the endpoint does not exist (404), in every mode: figures such
as queue depth and spend are not for the public, and a forgotten variable must fail closed."""

from __future__ import annotations

import hmac
from typing import Literal

from django.conf import settings


def metrics_access(authorization: str, *, token: str | None = None) -> Literal[200, 401, 404]:
    """200 to serve, 401 to ask for the token, 404 when metrics are off. `token`: the one
    expected (default METRICS_TOKEN)."""
    expected = settings.METRICS_TOKEN if token is None else token
    if not expected:
        return 404
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), expected):
        return 401
    return 200
