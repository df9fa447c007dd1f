from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.template.loader import render_to_string

from tenants.channels import group_name
from tenants.permissions import Access, Perm

PRESENCE_TTL_SECONDS = 3600


def _presence_key(access: Access) -> str:
    prefix: str = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    return f"{prefix}:presence:{access.workspace.schema_name}"


class PresenceConsumer(AsyncWebsocketConsumer):
    """Who is looking at this workspace right now. Members only; 4404 for anyone else.

    Each connection is a field in a Redis hash (so several workers agree); every join or leave
    re-renders the list for the whole workspace group as an htmx out-of-band fragment.
    """

    access: Access | None
    redis: aioredis.Redis

    async def connect(self) -> None:
        self.access = self.scope.get("access")
        if self.access is None or not self.access.can(Perm.WORKSPACE_VIEW):
            await self.close(code=4404)
            return
        self.group = group_name(self.access, "presence")
        self.redis = aioredis.Redis.from_url(settings.REDIS_URL)
        user = self.scope["user"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        key = _presence_key(self.access)
        await self.redis.hset(
            key,
            self.channel_name,
            json.dumps({"id": user.pk, "name": user.display_name, "email": user.email}),
        )
        await self.redis.expire(key, PRESENCE_TTL_SECONDS)
        await self.channel_layer.group_send(self.group, {"type": "presence.changed"})

    async def disconnect(self, code: int) -> None:
        access = getattr(self, "access", None)
        if access is None:  # refused at connect: nothing was registered
            return
        await self.redis.hdel(_presence_key(access), self.channel_name)
        await self.channel_layer.group_discard(self.group, self.channel_name)
        await self.channel_layer.group_send(self.group, {"type": "presence.changed"})
        await self.redis.aclose()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Clients only listen; anything they send is ignored."""

    async def presence_changed(self, event: dict[str, Any]) -> None:
        if self.access is None:
            return
        raw = await self.redis.hvals(_presence_key(self.access))
        people: dict[int, dict[str, Any]] = {}
        for item in raw:
            person = json.loads(item)
            people[person["id"]] = person
        online = sorted(people.values(), key=lambda p: p["name"].lower())
        html = render_to_string("tenants/_presence.html", {"online": online})
        await self.send(text_data=html)
