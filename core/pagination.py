"""List endpoints: one paginator, and the matching OpenAPI description of its envelope."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class Pagination(LimitOffsetPagination):
    max_limit = 100  # a bigger `limit` answers 100


def paginated_response(
    *, view: APIView, request: Request, queryset: Any, serializer: type[serializers.Serializer]
) -> Response:
    paginator = Pagination()
    page: list[Any] | None = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


def paginated(serializer: type[serializers.Serializer]) -> serializers.Serializer:
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


PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit", int, description="Number of results to return (default 50, at most 100)."
    ),
    OpenApiParameter("offset", int, description="Index of the first result to return."),
]
