"""List endpoints: one paginator, one envelope `{count, next, previous, results}`, and the
matching OpenAPI description. `limit` and `offset` are validated like any input: a value that
is not a whole number in range (an empty one included) is a 400 naming the parameter, never
silently replaced by the default.

Query serializers get `query_params.dict()`, not the QueryDict: DRF reads a QueryDict like an
HTML form, where an empty value means "not given", which the OpenAPI document cannot say."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_OFFSET = 1_000_000_000


class PageInput(serializers.Serializer[Any]):
    limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_LIMIT,
        required=False,
        help_text=f"Number of results to return (default {DEFAULT_LIMIT}).",
    )
    offset = serializers.IntegerField(
        min_value=0,
        max_value=MAX_OFFSET,
        required=False,
        help_text="Index of the first result to return (default 0).",
    )


class Pagination(LimitOffsetPagination):
    default_limit = DEFAULT_LIMIT
    max_limit = MAX_LIMIT

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> list[Any]:
        page = PageInput(data=request.query_params.dict())
        page.is_valid(raise_exception=True)
        self.request = request
        self.limit = page.validated_data.get("limit", self.default_limit)
        self.offset = page.validated_data.get("offset", 0)
        rows = list(queryset[self.offset : self.offset + self.limit])
        # A page that is not full is the last one: the total is known without a COUNT (one
        # round trip less for most lists, which fit on one page).
        if (rows and len(rows) < self.limit) or (not rows and self.offset == 0):
            self.count = self.offset + len(rows)
        else:
            self.count = self.get_count(queryset)
        return rows


def paginated_response(
    *, view: APIView, request: Request, queryset: Any, serializer: type[serializers.Serializer[Any]]
) -> Response:
    paginator = Pagination()
    page: list[Any] = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


def paginated(serializer: type[serializers.Serializer[Any]]) -> serializers.Serializer[Any]:
    """The schema of `paginated_response(...)` for `extend_schema(responses=...)`."""
    return inline_serializer(
        name=f"Paginated{serializer.__name__.removesuffix('Output')}List",
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer(many=True),
        },
    )


# `extend_schema(parameters=...)` turns a serializer's fields into query parameters, with
# their bounds: the document and the validation are the same object.
PAGE_PARAMETERS: list[Any] = [PageInput]
