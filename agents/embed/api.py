"""The embed API: the workspace's backend mints end-user tokens with its API key (scope
`run`); visitors' browsers mint anonymous tokens, read their own conversation and ask
questions with a token (header `X-End-User-Token`), never with an API key."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.embed import selectors, services, tokens
from agents.embed.throttling import (
    AnonymousTokenAddressThrottle,
    VisitorMessageAddressThrottle,
    VisitorMessageThrottle,
)
from agents.models import ChatShare, ConversationTurn
from core.exceptions import ApplicationError
from tenants.api.base import WorkspaceAPIView
from tenants.api.views import WORKSPACE_PARAM
from tenants.schemas import activate_public

TOKEN_HEADER = "X-End-User-Token"  # noqa: S105 (a header name)


class QuotaExceeded(ApplicationError):
    status = 429
    code = "throttled"


TOKEN_PARAM = OpenApiParameter(
    TOKEN_HEADER,
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="A visitor token (from the workspace's backend or the anonymous endpoint).",
)


class EndUserTokenInput(serializers.Serializer[Any]):
    end_user_id = serializers.RegexField(
        r"^[A-Za-z0-9_.:@-]{1,100}$",
        help_text="Your own id for this visitor (letters, digits and _.:@-; up to 100).",
    )


class AnonymousTokenInput(serializers.Serializer[Any]):
    previous = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=1000,
        help_text="An earlier anonymous token of this share: renewed for the same visitor.",
    )


class EndUserTokenOutput(serializers.Serializer[Any]):
    token = serializers.CharField()
    end_user_id = serializers.CharField()
    expires_at = serializers.DateTimeField()


class QuestionInput(serializers.Serializer[Any]):
    question = serializers.CharField(max_length=20000, allow_blank=True, trim_whitespace=False)


class TurnOutput(serializers.ModelSerializer[ConversationTurn]):
    class Meta:
        model = ConversationTurn
        fields = ["id", "question", "answer", "status", "error", "created_at"]
        read_only_fields = fields


class VisitorConversationOutput(serializers.Serializer[Any]):
    title = serializers.CharField()
    turns = TurnOutput(many=True)


def _token_output(minted: tokens.EndUserToken) -> dict[str, Any]:
    return {
        "token": minted.token,
        "end_user_id": minted.end_user_id,
        "expires_at": minted.expires_at,
    }


@extend_schema(parameters=[WORKSPACE_PARAM])
class EndUserTokenApi(WorkspaceAPIView):
    """For the workspace's own backend: a short-lived token for one of its users, to hand to
    the widget on its page (the API key stays on the server)."""

    @extend_schema(
        operation_id="share_end_user_token_create",
        request=EndUserTokenInput,
        responses={201: EndUserTokenOutput},
    )
    def post(self, request: Request, share_id: int) -> Response:
        data = EndUserTokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        share = selectors.share_for_token_minting(access=self.access, share_id=share_id)
        minted = tokens.token_sign(share=share, end_user_id=data.validated_data["end_user_id"])
        return Response(
            EndUserTokenOutput(_token_output(minted)).data, status=status.HTTP_201_CREATED
        )


class _VisitorApi(APIView):
    """A share's public endpoint: no session, no API key; the share's URL key finds it (in
    its workspace's schema) and a revoked or unknown one answers 404."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []
    share: ChatShare
    end_user_key: str | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        _, self.share = selectors.share_public(space=kwargs["space"], key=kwargs["share_key"])
        super().initial(request, *args, **kwargs)

    def end_user(self, request: Request) -> str:
        return tokens.token_verify(
            token=request.headers.get(TOKEN_HEADER, "").strip(), share=self.share
        )

    def check_throttles(self, request: Request) -> None:
        """Each quota that is used up names itself in the 429 (the visitor sees why)."""
        refusals = [
            (throttle.wait() or 0.0, getattr(throttle, "message", "Too many requests"))
            for throttle in self.get_throttles()
            if not throttle.allow_request(request, self)
        ]
        if refusals:
            wait, reason = max(refusals)
            raise QuotaExceeded(f"{reason}: try again in {int(wait) + 1} seconds.")

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        activate_public()
        return super().finalize_response(request, response, *args, **kwargs)


class AnonymousTokenApi(_VisitorApi):
    throttle_classes = [AnonymousTokenAddressThrottle]

    @extend_schema(
        operation_id="share_visitor_token_create",
        auth=[],
        request=AnonymousTokenInput,
        responses={201: EndUserTokenOutput},
    )
    def post(self, request: Request, space: str, share_key: str) -> Response:
        data = AnonymousTokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        previous = data.validated_data.get("previous") or ""
        end_user = tokens.token_renewable(token=previous, share=self.share) if previous else None
        minted = tokens.token_sign(
            share=self.share, end_user_id=end_user or tokens.new_anonymous_id()
        )
        return Response(
            EndUserTokenOutput(_token_output(minted)).data, status=status.HTTP_201_CREATED
        )


class VisitorConversationApi(_VisitorApi):
    throttle_classes = [VisitorMessageThrottle, VisitorMessageAddressThrottle]
    # POST asks a question: one run of the workspace's plan (402 when the plan or budget is
    # used up; docs/embed.md). GET returns a streaming turn's text so far as its `answer`.
    counts_against_plan = True

    def check_throttles(self, request: Request) -> None:
        if request.method == "POST":  # reading one's history is not counted
            self.end_user_key = f"{self.share.pk}:{self.end_user(request)}"
            super().check_throttles(request)

    def _output(self, end_user_id: str) -> Response:
        conversation = selectors.visitor_conversation(share=self.share, end_user_id=end_user_id)
        turns = selectors.visitor_turns(conversation=conversation)
        body = {"title": conversation.title if conversation else "", "turns": turns}
        return Response(VisitorConversationOutput(body).data)

    @extend_schema(
        operation_id="share_visitor_conversation",
        auth=[],
        parameters=[TOKEN_PARAM],
        responses={200: VisitorConversationOutput},
    )
    def get(self, request: Request, space: str, share_key: str) -> Response:
        return self._output(self.end_user(request))

    @extend_schema(
        operation_id="share_visitor_ask",
        auth=[],
        parameters=[TOKEN_PARAM],
        request=QuestionInput,
        responses={202: TurnOutput},
    )
    def post(self, request: Request, space: str, share_key: str) -> Response:
        end_user_id = self.end_user(request)
        data = QuestionInput(data=request.data)
        data.is_valid(raise_exception=True)
        turn = services.visitor_ask(
            share=self.share, end_user_id=end_user_id, question=data.validated_data["question"]
        )
        return Response(TurnOutput(turn).data, status=status.HTTP_202_ACCEPTED)
