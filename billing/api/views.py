from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from billing import invoices, usage
from billing.api import serializers as s
from core.pagination import PAGE_PARAMETERS, paginated, paginated_response
from tenants.api.base import WorkspaceAPIView
from tenants.api.views import WORKSPACE_PARAM


@extend_schema(parameters=[WORKSPACE_PARAM])
class BillingApi(WorkspaceAPIView):
    @extend_schema(operation_id="billing_retrieve", responses=s.BillingOutput)
    def get(self, request: Request) -> Response:
        """The workspace's plan, status and period, each allowance with this period's figure,
        and the AI spend overage so far. Owners, admins, and keys with `billing.view`."""
        summary = usage.billing_summary(access=self.access)
        return Response(s.BillingOutput(summary).data)


@extend_schema(parameters=[WORKSPACE_PARAM])
class InvoiceListApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="billing_invoices_list",
        responses=paginated(s.InvoiceOutput),
        parameters=PAGE_PARAMETERS,
    )
    def get(self, request: Request) -> Response:
        """The workspace's Stripe invoices, newest first, with their hosted links."""
        return paginated_response(
            view=self,
            request=request,
            queryset=invoices.invoices_list(access=self.access),
            serializer=s.InvoiceOutput,
        )
