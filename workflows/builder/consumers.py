"""The canvas's websocket: ws/w/<slug>/workflows/<workflow_id>/canvas/.

Members of the workspace only (4404 for anyone else, as for a workflow that does not exist).
What it pushes, as JSON:

- `{"type": "presence", "present": [{"name", "selected"}]}`: the others who have this
  workflow's canvas open and the step each has selected, whenever someone comes, goes or
  selects another step. Each open canvas is a field of a Redis hash (so every worker agrees),
  removed when its socket closes.
- `{"type": "saved", "version": N}`: version N of the workflow was saved (by the canvas, the
  side panel, the API or an import); the canvas redraws it unless that would throw away typing.
- `{"type": "run", "run": id}`: a run of the workflow started, or the run the canvas watches
  changed; the canvas re-reads the step states from its JSON endpoint.

The canvas sends `{"selected": "<step id>"}` when its selection changes and
`{"watch": <run id>}` for the live run whose steps it shows. Anything else is ignored.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from core.exceptions import NotFound
from tenants.channels import tenant_db
from tenants.permissions import Access
from workflows import events, run_selectors, selectors

PRESENCE_TTL_SECONDS = 3600
MAX_SELECTED = 64


def _exists(access: Access, workflow_id: int) -> bool:
    try:
        selectors.workflow_get(access=access, workflow_id=workflow_id)
    except NotFound:
        return False
    return True


def _run_of(access: Access, workflow_id: int, run_id: int) -> bool:
    try:
        run = run_selectors.run_get(access=access, run_id=run_id)
    except NotFound:
        return False
    return run.workflow_id == workflow_id


class CanvasConsumer(AsyncWebsocketConsumer):
    access: Access | None = None
    group: str | None = None
    watching: str | None = None  # the group of the run being watched
    redis: aioredis.Redis

    async def connect(self) -> None:
        self.access = self.scope.get("access")
        self.workflow_id = int(self.scope["url_route"]["kwargs"]["workflow_id"])
        if self.access is None or not await tenant_db(self.access, _exists)(
            self.access, self.workflow_id
        ):
            self.access = None
            await self.close(code=4404)
            return
        schema = self.access.workspace.schema_name
        self.group = events.canvas_group(schema, self.workflow_id)
        self.key = f"{settings.CHANNEL_LAYERS['default']['CONFIG']['prefix']}:canvas:{self.group}"
        self.redis = aioredis.Redis.from_url(settings.REDIS_URL)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._note("")

    async def disconnect(self, code: int) -> None:
        if self.access is None or self.group is None:  # refused at connect: nothing registered
            return
        await self.redis.hdel(self.key, self.channel_name)
        await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.watching is not None:
            await self.channel_layer.group_discard(self.watching, self.channel_name)
        await self.channel_layer.group_send(self.group, {"type": "presence.changed"})
        await self.redis.aclose()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.access is None:
            return
        try:
            message = json.loads(text_data or "")
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        selected = message.get("selected")
        if isinstance(selected, str):
            await self._note(selected[:MAX_SELECTED])
        run_id = message.get("watch")
        if isinstance(run_id, int) and not isinstance(run_id, bool):
            await self._watch(run_id)

    async def _note(self, selected: str) -> None:
        user = self.scope["user"]
        entry = {"id": user.pk, "name": user.email, "selected": selected}
        await self.redis.hset(self.key, self.channel_name, json.dumps(entry))
        await self.redis.expire(self.key, PRESENCE_TTL_SECONDS)
        await self.channel_layer.group_send(self.group, {"type": "presence.changed"})

    async def _watch(self, run_id: int) -> None:
        if self.access is None:
            return
        if not await tenant_db(self.access, _run_of)(self.access, self.workflow_id, run_id):
            return
        group = events.run_group(self.access.workspace.schema_name, run_id)
        if group == self.watching:
            return
        if self.watching is not None:
            await self.channel_layer.group_discard(self.watching, self.channel_name)
        self.watching = group
        await self.channel_layer.group_add(group, self.channel_name)

    async def presence_changed(self, event: dict[str, Any]) -> None:
        me = self.scope["user"].pk
        people: dict[int, dict[str, str]] = {}
        for raw in await self.redis.hvals(self.key):
            entry = json.loads(raw)
            if entry["id"] != me and (entry["selected"] or entry["id"] not in people):
                people[entry["id"]] = {"name": entry["name"], "selected": entry["selected"]}
        present = sorted(people.values(), key=lambda p: p["name"])
        await self.send(text_data=json.dumps({"type": "presence", "present": present}))

    async def canvas_saved(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "saved", "version": event["version"]}))

    async def canvas_run(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "run", "run": event["run"]}))

    async def run_changed(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "run", "run": event.get("run")}))
