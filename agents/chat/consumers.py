from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from agents.chat import live, selectors, services
from agents.chat.forms import QuestionForm
from core.exceptions import ApplicationError, NotFound
from core.forms import form_add_application_error
from tenants.channels import tenant_db
from tenants.permissions import Access


def _open(access: Access, conversation_id: int) -> bool:
    """May this socket watch the conversation? Also fails abandoned turns, as the page does."""
    try:
        conversation = selectors.conversation_get(access=access, conversation_id=conversation_id)
    except NotFound:
        return False
    services.turns_expire_stale(conversation_id=conversation.pk)
    return True


def _resync(access: Access, conversation_id: int) -> tuple[str, live.SocketView]:
    conversation = selectors.conversation_get(access=access, conversation_id=conversation_id)
    return live.resync(
        schema_name=access.workspace.schema_name,
        turns=selectors.conversation_turns(conversation),
    )


def _ask(access: Access, conversation_id: int, data: dict[str, Any]) -> str:
    """Start a turn from the message form; the form again (empty, or with its errors)."""
    form = QuestionForm(data)
    if form.is_valid():
        try:
            services.turn_start(
                access=access,
                conversation_id=conversation_id,
                question=form.cleaned_data["question"],
            )
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            form = QuestionForm(initial={})
    return live.render_form(
        workspace_slug=access.workspace.slug, conversation_id=conversation_id, form=form
    )


class ConversationConsumer(AsyncWebsocketConsumer):
    """One open conversation page. Members who may see the conversation only; 4404 for anyone
    else (as for a conversation that does not exist).

    On connect it joins the conversation's group, then sends every turn as it stands; from then
    on it relays the group's fragments that the page has not shown yet (`live.SocketView`). A
    message from the page is a question (the htmx ws extension's `ws-send` JSON)."""

    access: Access | None = None
    group: str | None = None
    view: live.SocketView

    async def connect(self) -> None:
        self.access = self.scope.get("access")
        self.conversation_id = int(self.scope["url_route"]["kwargs"]["conversation_id"])
        if self.access is None or not await tenant_db(self.access, _open)(
            self.access, self.conversation_id
        ):
            await self.close(code=4404)
            return
        schema_name = self.access.workspace.schema_name
        self.group = live.conversation_group(schema_name, self.conversation_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        html, self.view = await tenant_db(self.access, _resync)(self.access, self.conversation_id)
        await self.send(text_data=html)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.access is None or not text_data:
            return
        try:
            data = json.loads(text_data)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        html = await tenant_db(self.access, _ask)(self.access, self.conversation_id, data)
        await self.send(text_data=html)

    async def chat_fragment(self, message: dict[str, Any]) -> None:
        if self.view.admit(message):
            await self.send(text_data=message["html"])
