"""Marketplace API. Each view: input serializer → one service or selector → output serializer.

Browsing (search, a listing, its approved versions and reviews) is public: no sign-in. Installs,
reviews, replies and publishing act for one workspace (API key, or session + `X-Workspace`) and
the services check the permission; flags need any signed-in user or API key. A listing that is
not public, or an install of another workspace, is a 404.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated, IsAuthenticatedOrReadOnly
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from accounts.models import User
from core.exceptions import NotFound, PermissionDenied, ValidationFailed
from core.pagination import PAGE_PARAMETERS, paginated, paginated_response
from core.schema import ErrorOutput
from marketplace import purchases, selectors, services
from marketplace.api import serializers as s
from marketplace.models import ListingVersion, Review
from marketplace.pricing import listing_path
from tenants.api.base import WorkspaceAPIView, api_access
from tenants.api.views import WORKSPACE_PARAM
from tenants.models import ApiKey
from tenants.permissions import Perm
from tenants.schemas import activate_public

PURCHASE_REQUIRED = OpenApiResponse(
    ErrorOutput,
    description="The listing's current version is paid and this workspace has no runnable "
    "purchase of it (`error.code` purchase_required); the message says where to buy it.",
)

# --- Bases


class PublicApiView(APIView):
    """Readable by anyone; still authenticates, so a bad API key is a 401, not anonymous."""

    permission_classes = [AllowAny]


class MixedApiView(APIView):
    """GET is public; other methods act for a workspace (`api_access(request)`),
    like WorkspaceAPIView but only once a handler asks for it."""

    permission_classes = [IsAuthenticatedOrReadOnly]

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        activate_public()
        return super().finalize_response(request, response, *args, **kwargs)


SEARCH_PARAMETERS = [s.ListingSearchInput]  # its fields, with their bounds, are the parameters


def _page_url(url: str, limit: int, offset: int) -> str:
    return replace_query_param(replace_query_param(url, "limit", limit), "offset", offset)


# --- Listings


class ListingListApi(MixedApiView):
    @extend_schema(
        operation_id="marketplace_listings_search",
        parameters=SEARCH_PARAMETERS,
        responses=s.ListingSearchOutput,
        description="Search and browse public listings (no sign-in). Keyword and semantic "
        "search are fused unless `mode` says otherwise. A bad parameter is a 400 naming it.",
    )
    def get(self, request: Request) -> Response:
        data = s.ListingSearchInput(data=request.query_params.dict())
        data.is_valid(raise_exception=True)
        params = dict(data.validated_data)
        result = selectors.listing_search(
            q=params["q"],
            category=params.get("category"),
            kind=params.get("kind"),
            provider=params.get("provider"),
            pricing=params.get("price"),
            min_rating=params.get("min_rating"),
            sort=params["sort"],
            mode=params["mode"],
            limit=params["limit"],
            offset=params["offset"],
        )
        limit, offset = params["limit"], params["offset"]
        url = request.build_absolute_uri()
        output = {
            "count": result.total_estimate,
            "next": _page_url(url, limit, offset + limit) if result.has_more else None,
            "previous": _page_url(url, limit, max(offset - limit, 0)) if offset else None,
            "results": result.listings,
            "mode": result.mode,
        }
        return Response(s.ListingSearchOutput(output).data)

    @extend_schema(
        operation_id="marketplace_listings_publish",
        parameters=[WORKSPACE_PARAM],
        request=s.ListingPublishInput,
        responses={201: s.PublishedVersionOutput},
        description="Submit an agent or workflow of this workspace for review (needs `build`): "
        "a new listing, or a new version of it. The version is `pending` until moderated.",
    )
    def post(self, request: Request) -> Response:
        access = api_access(request)
        data = s.ListingPublishInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        category = fields.pop("category")
        slug = fields.pop("slug", "") or None
        try:
            version = services.listing_publish(
                access=access, category_slug=category, slug=slug, **fields
            )
        except ValidationFailed as exc:
            # The service names its argument; the API calls the field `category`.
            if "category_slug" in exc.fields:
                exc.fields["category"] = exc.fields.pop("category_slug")
            raise
        return Response(s.PublishedVersionOutput(version).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[WORKSPACE_PARAM])
class MyListingsApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="marketplace_published_list",
        parameters=PAGE_PARAMETERS,
        responses=paginated(s.MyListingOutput),
        description="This workspace's listings as a publisher, public or not, with every "
        "version's moderation status and reason.",
    )
    def get(self, request: Request) -> Response:
        self.access.require(Perm.WORKSPACE_VIEW)
        return paginated_response(
            view=self,
            request=request,
            queryset=selectors.workspace_listings(access=self.access),
            serializer=s.MyListingOutput,
        )


class ListingDetailApi(PublicApiView):
    @extend_schema(
        operation_id="marketplace_listings_retrieve",
        responses=s.ListingDetailOutput,
        description="A public listing with its figures and current version (no definition: "
        "see the versions endpoint).",
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(s.ListingDetailOutput(selectors.listing_detail(slug=slug)).data)


class ListingVersionsApi(PublicApiView):
    @extend_schema(
        operation_id="marketplace_listing_versions_list",
        parameters=PAGE_PARAMETERS,
        responses=paginated(s.ListingVersionOutput),
        description="Approved versions, newest first, with changelog, price and definition. "
        "A paid version's `definition` is null except for the publisher's own workspace (its "
        "API key): buyers get their copy by installing.",
    )
    def get(self, request: Request, slug: str) -> Response:
        listing = selectors.public_listing(slug=slug)
        # Only a key of the publishing workspace sees paid definitions (what buyers pay for).
        publisher_view = (
            isinstance(request.auth, ApiKey)
            and listing.publisher.workspace_id is not None
            and request.auth.workspace_id == listing.publisher.workspace_id
        )
        return paginated_response(
            view=self,
            request=request,
            queryset=listing.versions.filter(status=ListingVersion.Status.APPROVED).order_by(
                "-number"
            ),
            serializer=s.PublisherListingVersionOutput
            if publisher_view
            else s.ListingVersionOutput,
        )


class ListingReviewsApi(MixedApiView):
    @extend_schema(
        operation_id="marketplace_listing_reviews_list",
        parameters=PAGE_PARAMETERS,
        responses=paginated(s.ReviewOutput),
        description="A public listing's reviews, newest first.",
    )
    def get(self, request: Request, slug: str) -> Response:
        listing = selectors.public_listing(slug=slug)
        return paginated_response(
            view=self,
            request=request,
            queryset=Review.objects.filter(listing=listing).order_by("-created_at", "-id"),
            serializer=s.ReviewOutput,
        )

    @extend_schema(
        operation_id="marketplace_listing_reviews_save",
        parameters=[WORKSPACE_PARAM],
        request=s.ReviewInput,
        responses={201: s.ReviewOutput, 200: s.ReviewOutput},
        description="This workspace's review (one per workspace): 201 when it is new, 200 when "
        "saving again edited it. Only a workspace that installed the listing and ran it may "
        "review: else 403.",
    )
    def post(self, request: Request, slug: str) -> Response:
        access = api_access(request)
        data = s.ReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        listing = selectors.public_listing(slug=slug)
        edits = Review.objects.filter(listing=listing, workspace=access.workspace).exists()
        review = services.review_save(access=access, listing=listing, **data.validated_data)
        code = status.HTTP_200_OK if edits else status.HTTP_201_CREATED
        return Response(s.ReviewOutput(review).data, status=code)


@extend_schema(parameters=[WORKSPACE_PARAM])
class ReviewReplyApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="marketplace_reviews_reply",
        request=s.ReplyInput,
        responses=s.ReviewOutput,
        description="The publisher's one public reply to a review of its listing.",
    )
    def post(self, request: Request, review_id: int) -> Response:
        data = s.ReplyInput(data=request.data)
        data.is_valid(raise_exception=True)
        review = Review.objects.filter(pk=review_id).first()
        if review is None:
            raise NotFound("No such review.")
        review = services.review_reply(access=self.access, review=review, **data.validated_data)
        return Response(s.ReviewOutput(review).data)


class ListingFlagApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="marketplace_listing_flags_create",
        request=s.FlagInput,
        responses={201: s.FlagOutput},
        description="Report a listing to the moderators (any signed-in user or API key; a "
        "key reports as the person who created it).",
    )
    def post(self, request: Request, slug: str) -> Response:
        data = s.FlagInput(data=request.data)
        data.is_valid(raise_exception=True)
        user: object = request.user
        if isinstance(request.auth, ApiKey):
            user = request.auth.created_by
        if not isinstance(user, User):
            raise PermissionDenied("This API key has no person to report as.")
        flag = services.flag_create(
            user=user, listing=selectors.public_listing(slug=slug), **data.validated_data
        )
        return Response(s.FlagOutput(flag).data, status=status.HTTP_201_CREATED)


# --- Installs


@extend_schema(parameters=[WORKSPACE_PARAM])
class ListingInstallApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="marketplace_listings_install",
        request=None,
        responses={201: s.InstallOutput, 402: PURCHASE_REQUIRED},
        description="Copy the listing's current version into this workspace (needs `build`). "
        "409 when it is already installed; 402 when it is paid and not bought.",
    )
    def post(self, request: Request, slug: str) -> Response:
        install = services.install(access=self.access, listing=selectors.public_listing(slug=slug))
        return Response(s.InstallOutput(install).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[WORKSPACE_PARAM])
class InstallListApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="marketplace_installs_list",
        parameters=PAGE_PARAMETERS,
        responses=paginated(s.InstallStateOutput),
        description="This workspace's active installs, with whether a newer version exists.",
    )
    def get(self, request: Request) -> Response:
        self.access.require(Perm.WORKSPACE_VIEW)
        return paginated_response(
            view=self,
            request=request,
            queryset=selectors.workspace_installs(access=self.access),
            serializer=s.InstallStateOutput,
        )


@extend_schema(parameters=[WORKSPACE_PARAM])
class InstallUpgradeApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="marketplace_installs_upgrade",
        request=None,
        responses={200: s.InstallStateOutput, 402: PURCHASE_REQUIRED},
        description="Move the install to the listing's current version (409 when already there; "
        "402 when that version is paid and this workspace has not bought the listing).",
    )
    def post(self, request: Request, install_id: int) -> Response:
        install = selectors.workspace_install(access=self.access, install_id=install_id)
        services.upgrade(access=self.access, install=install)
        # Read again: its new pinned version.
        upgraded = selectors.workspace_install(access=self.access, install_id=install_id)
        return Response(s.InstallStateOutput(upgraded).data)


@extend_schema(parameters=[WORKSPACE_PARAM])
class InstallUninstallApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="marketplace_installs_uninstall",
        request=None,
        responses=s.InstallOutput,
        description="End the install and archive the copy (its runs stay).",
    )
    def post(self, request: Request, install_id: int) -> Response:
        install = services.uninstall(
            access=self.access,
            install=selectors.workspace_install(access=self.access, install_id=install_id),
        )
        return Response(s.InstallOutput(install).data)


# --- Purchases (the buyer's)


@extend_schema(parameters=[WORKSPACE_PARAM])
class PurchaseListApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="marketplace_purchases_list",
        parameters=PAGE_PARAMETERS,
        responses=paginated(s.PurchaseOutput),
        description="This workspace's purchases of paid listings, newest first (only its own).",
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            view=self,
            request=request,
            queryset=purchases.workspace_purchases(access=self.access),
            serializer=s.PurchaseOutput,
        )

    @extend_schema(
        operation_id="marketplace_purchases_start",
        request=s.PurchaseStartInput,
        responses={201: s.PurchaseStartOutput},
        description="Start buying a paid listing for this workspace (owners and admins: "
        "`billing.manage`). Answers the Stripe Checkout URL to pay on; the purchase becomes "
        "active, and the listing is installed, when Stripe confirms the payment. 409 while "
        "billing is off, for a free listing or one already bought; 503 when Stripe is down.",
    )
    def post(self, request: Request) -> Response:
        data = s.PurchaseStartInput(data=request.data)
        data.is_valid(raise_exception=True)
        listing = selectors.public_listing(slug=data.validated_data["listing"])
        back = request.build_absolute_uri(listing_path(listing))
        started = purchases.purchase_start(
            access=self.access,
            listing=listing,
            success_url=data.validated_data.get("success_url") or back,
            cancel_url=data.validated_data.get("cancel_url") or back,
        )
        return Response(
            s.PurchaseStartOutput(
                {"purchase": started.purchase, "checkout_url": started.checkout_url}
            ).data,
            status=status.HTTP_201_CREATED,
        )


@extend_schema(parameters=[WORKSPACE_PARAM])
class PurchaseCancelApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="marketplace_purchases_cancel",
        request=None,
        responses=s.PurchaseOutput,
        description="Cancel a monthly purchase at the end of its paid period (owners and "
        "admins). Its copies run until then.",
    )
    def post(self, request: Request, purchase_id: int) -> Response:
        purchase = purchases.purchase_cancel(access=self.access, purchase_id=purchase_id)
        return Response(s.PurchaseOutput(purchase).data)
