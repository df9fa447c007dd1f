"""The creator's money in the API (issue 15): balances and earnings by listing, and payouts,
for the workspace's own publisher only (`billing.view`: owners, admins, keys with that scope).
Another workspace's figures are unreachable: the caller acts in their own workspace, and an
outsider naming this one gets 404."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.exceptions import NotFound
from core.pagination import PAGE_PARAMETERS, paginated, paginated_response
from marketplace import earnings, selectors
from marketplace.models import Payout, Publisher
from tenants.api.base import WorkspaceAPIView
from tenants.api.views import WORKSPACE_PARAM
from tenants.permissions import Perm


class BalancesOutput(serializers.Serializer[Any]):
    currency = serializers.CharField(help_text="ISO code, lower case; amounts are in its cents.")
    pending = serializers.IntegerField(help_text="Cents in the hold period.")
    available = serializers.IntegerField(
        help_text="Cents the next payout pays; negative when a refund is owed (netted)."
    )
    frozen = serializers.IntegerField(help_text="Cents under dispute.")
    paid = serializers.IntegerField(help_text="Cents transferred to the Stripe account.")


class ListingEarningsOutput(serializers.Serializer[Any]):
    listing_id = serializers.IntegerField(allow_null=True)
    title = serializers.CharField()
    currency = serializers.CharField(help_text="The currency of this row's amounts.")
    sales = serializers.IntegerField()
    gross_cents = serializers.IntegerField(help_text="What buyers paid, less refunds.")
    fee_cents = serializers.IntegerField(help_text="The platform's fee.")
    net_cents = serializers.IntegerField(help_text="The creator's earnings.")


class EarningsOutput(serializers.Serializer[Any]):
    publisher = serializers.SlugField()
    balances = BalancesOutput(
        many=True,
        help_text="One entry per currency earned in (the creator's default currency first); "
        "amounts in different currencies are never added together.",
    )
    listings = ListingEarningsOutput(
        many=True, help_text="One row per listing and currency it sold in."
    )


class PayoutOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Payout
        fields = [
            "id",
            "period",
            "amount_cents",
            "currency",
            "status",
            "stripe_transfer_id",
            "paid_at",
            "created_at",
        ]
        # Output only: every field is always present (required in the schema).
        read_only_fields = fields


def _publisher(view: WorkspaceAPIView) -> Publisher:
    view.access.require(Perm.BILLING_VIEW)
    publisher = earnings.creator_publisher(access=view.access)
    if publisher is None:
        raise NotFound("This workspace has not published anything: it has no earnings.")
    return publisher


@extend_schema(parameters=[WORKSPACE_PARAM])
class EarningsApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="marketplace_earnings_retrieve",
        responses=EarningsOutput,
        description="The workspace's creator balances per currency (cents, sums of its "
        "ledger) and earnings by listing and currency. 404 when the workspace never published.",
    )
    def get(self, request: Request) -> Response:
        publisher = _publisher(self)
        data = {
            "publisher": publisher.slug,
            "balances": [
                {"currency": row.currency, **row.cents}
                for row in selectors.creator_balances(publisher_id=publisher.pk)
            ],
            "listings": earnings.earnings_by_listing(publisher_id=publisher.pk),
        }
        return Response(EarningsOutput(data).data)


@extend_schema(parameters=[WORKSPACE_PARAM])
class PayoutListApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="marketplace_payouts_list",
        parameters=PAGE_PARAMETERS,
        responses=paginated(PayoutOutput),
        description="The workspace's payouts, newest first, with their Stripe transfer.",
    )
    def get(self, request: Request) -> Response:
        publisher = _publisher(self)
        return paginated_response(
            view=self,
            request=request,
            queryset=earnings.creator_payouts(publisher_id=publisher.pk),
            serializer=PayoutOutput,
        )
