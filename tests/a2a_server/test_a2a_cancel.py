"""Canceling an A2A task cancels its run; no worker runs here, so the run stays queued."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from a2a.types import CancelTaskRequest, GetTaskRequest, TaskState
from a2a.utils.errors import TaskNotCancelableError
from django_tenants.utils import schema_context

from agents.models import AgentRun
from tests.helpers.a2a import a2a_client, agent_url, ask, card_of, http, make_agent, make_key
from tests.helpers.personas import World


def test_cancel_a_submitted_task_then_it_reads_canceled_and_cannot_be_canceled_twice_over(
    committed_world: World, asgi_live_server: Any
) -> None:
    agent = make_agent(committed_world)
    secret = make_key(committed_world)
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, agent.pk)

    async def scenario() -> tuple[Any, Any, Any]:
        async with http(secret) as client:
            a2a = a2a_client(client, await card_of(client, url), streaming=False)
            request = ask("What is 6 * 7?", return_immediately=True)
            [response] = [event async for event in a2a.send_message(request)]
            canceled = await a2a.cancel_task(CancelTaskRequest(id=response.task.id))
            fetched = await a2a.get_task(GetTaskRequest(id=response.task.id))
            return response.task, canceled, fetched

    submitted, canceled, fetched = asyncio.run(scenario())
    assert submitted.status.state == TaskState.TASK_STATE_SUBMITTED
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert fetched.status.state == TaskState.TASK_STATE_CANCELED
    with schema_context(committed_world.workspace_a.schema_name):
        run = AgentRun.objects.get(pk=int(submitted.id))
        assert run.status == AgentRun.Status.CANCELED
        run.status = AgentRun.Status.SUCCEEDED
        run.save(update_fields=["status"])

    async def cancel_finished() -> None:
        async with http(secret) as client:
            a2a = a2a_client(client, await card_of(client, url), streaming=False)
            await a2a.cancel_task(CancelTaskRequest(id=submitted.id))

    with pytest.raises(TaskNotCancelableError, match="only a queued run"):
        asyncio.run(cancel_finished())


def test_a_protocol_0_3_client_sends_message_send_and_tasks_get(
    committed_world: World, asgi_live_server: Any
) -> None:
    """0.3 method names and shapes, no A2A-Version header: the SDK's compatibility adapter."""
    agent = make_agent(committed_world)
    secret = make_key(committed_world)
    url = agent_url(asgi_live_server.url, committed_world.workspace_a, agent.pk)
    message = {
        "kind": "message",
        "messageId": "m-1",
        "role": "user",
        "parts": [{"kind": "text", "text": "What is 6 * 7?"}],
    }

    async def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        async with http(secret) as client:
            response = await client.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
            )
            body: dict[str, Any] = response.json()
            return body

    sent = asyncio.run(
        call("message/send", {"message": message, "configuration": {"blocking": False}})
    )
    task = sent["result"]
    assert task["kind"] == "task", sent
    assert task["status"]["state"] == "submitted"
    fetched = asyncio.run(call("tasks/get", {"id": task["id"]}))
    assert fetched["result"]["id"] == task["id"]
    canceled = asyncio.run(call("tasks/cancel", {"id": task["id"]}))
    assert canceled["result"]["status"]["state"] == "canceled"
    # 0.3's contextId continues the context too (decision 125).
    assert task["contextId"].startswith("ctx-")
    again = {**message, "messageId": "m-2", "contextId": task["contextId"]}
    continued = asyncio.run(
        call("message/send", {"message": again, "configuration": {"blocking": False}})
    )
    assert continued["result"]["contextId"] == task["contextId"], continued
    assert continued["result"]["id"] != task["id"]
    foreign = {**message, "messageId": "m-3", "contextId": "ctx-elsewhere"}
    refused = asyncio.run(call("message/send", {"message": foreign}))
    assert refused["error"]["code"] == -32602
    assert "contextId" in refused["error"]["message"]
