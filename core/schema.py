"""The OpenAPI document describes every answer the API gives, errors included.

drf-spectacular documents the success answer a view declares. The errors come from the one
exception handler (`core.api`), whatever the view: this AutoSchema adds them to every
operation with the envelope's schema, each status where it can happen.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import permissions, serializers


class ErrorDetailOutput(serializers.Serializer[Any]):
    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # `fields` would shadow Serializer.fields as a class attribute.
        return {
            "code": serializers.CharField(help_text="Machine-readable: `invalid`, `not_found`, …"),
            "message": serializers.CharField(help_text="One sentence for a person."),
            "fields": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField()),
                help_text="Problems by field (body field, query parameter or header name).",
            ),
        }


class ErrorOutput(serializers.Serializer[Any]):
    error = ErrorDetailOutput()


ERRORS: dict[int, str] = {
    400: "Invalid input: `error.fields` names each body field, query parameter or header.",
    401: "No credentials, or an API key that is unknown, revoked, expired or malformed.",
    402: "A plan allowance is used up (`error.code` quota_exceeded); the message says which "
    "and how to raise it.",
    403: "Your role or the key's scopes do not allow this.",
    404: "Not found in this workspace (or a workspace you cannot see).",
    406: "The API answers JSON only (`Accept` must allow application/json).",
    409: "The current state does not allow this (e.g. already decided, already installed).",
    413: "The request body is larger than the server accepts.",
    415: "Send the body as application/json.",
    429: "Too many requests (or failed key attempts), or the workspace's plan rate is used up "
    "(`error.code` plan_rate_limited); `Retry-After` says when to retry.",
    503: "A service the platform needs is down; `Retry-After` says when to retry.",
}
RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before retrying.",
    }
}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class AutoSchema(SpectacularAutoSchema):
    def _is_public(self) -> bool:
        """Whether anonymous callers may make this call (marketplace browsing)."""
        checks = [p.__class__ for p in self.view.get_permissions()]
        if all(c is permissions.AllowAny for c in checks):
            return True
        return self.method == "GET" and permissions.IsAuthenticatedOrReadOnly in checks

    def _error_statuses(self) -> list[int]:
        public = self._is_public()
        has_path_params = "{" in self.path
        has_body = self.method in {"POST", "PUT", "PATCH"} and self.get_request_serializer()
        statuses = [400, 401, 406, 429, 503]
        if not public:
            statuses.append(403)
        if has_path_params or not public:
            statuses.append(404)
        if self.method in UNSAFE:
            statuses.append(409)
        if has_body:
            statuses += [413, 415]
        return sorted(statuses)

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        envelope = self.resolve_serializer(ErrorOutput, "response").ref
        for status in self._error_statuses():
            answer: dict[str, Any] = {
                "description": ERRORS[status],
                "content": {"application/json": {"schema": envelope}},
            }
            if status in (429, 503):
                answer["headers"] = RETRY_AFTER
            responses.setdefault(str(status), answer)
        if getattr(self.view, "counts_against_plan", False) and self.method == "POST":
            # Starting a run counts against the workspace's plan (billing/quotas.py).
            responses.setdefault(
                "402",
                {
                    "description": ERRORS[402],
                    "content": {"application/json": {"schema": envelope}},
                },
            )
        if "202" in responses:  # accepted work: where to poll it
            responses["202"].setdefault("headers", {})["Location"] = {
                "schema": {"type": "string"},
                "required": True,
                "description": "Path of the accepted run or step: poll it with GET.",
            }
        return responses
