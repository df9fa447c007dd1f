"""The run page's websocket: ws/w/<slug>/workflows/runs/<run_id>/."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from core.exceptions import NotFound
from tenants.channels import tenant_db
from tenants.permissions import Access
from workflows import events, run_selectors
from workflows.live import render as run_render


def _exists(access: Access, run_id: int) -> bool:
    try:
        run_selectors.run_get(access=access, run_id=run_id)
    except NotFound:
        return False
    return True


def _everything(access: Access, run_id: int) -> str:
    return run_render.render_full(run_render.run_view(access=access, run_id=run_id))


def _changed(access: Access, run_id: int, step_ids: list[int]) -> str:
    try:
        view = run_render.run_view(access=access, run_id=run_id, step_ids=step_ids)
    except NotFound:  # deleted (retention) while the page was open
        return ""
    return run_render.render_changed(view)


class RunConsumer(AsyncWebsocketConsumer):
    """One open run page. Members of the workspace only; 4404 for anyone else (as for a run
    that does not exist).

    It joins the run's group first and only then renders the whole run from the database, so
    no change can fall between the two: a page opened mid-run (or reconnecting after a dropped
    message) is right from the first message. Each `run.changed` message names step runs; the
    consumer re-reads them and the run and sends their fragments, so what it sends is never
    older than the database."""

    access: Access | None = None
    group: str | None = None

    async def connect(self) -> None:
        self.access = self.scope.get("access")
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        if self.access is None or not await tenant_db(self.access, _exists)(
            self.access, self.run_id
        ):
            await self.close(code=4404)
            return
        self.group = events.run_group(self.access.workspace.schema_name, self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        html = await tenant_db(self.access, _everything)(self.access, self.run_id)
        await self.send(text_data=html)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page sends nothing; actions are ordinary POSTs."""

    async def run_changed(self, message: dict[str, Any]) -> None:
        if self.access is None:
            return
        steps = [int(i) for i in message.get("steps") or []]
        html = await tenant_db(self.access, _changed)(self.access, self.run_id, steps)
        if html:
            await self.send(text_data=html)
