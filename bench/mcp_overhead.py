"""Benchmark the MCP endpoint: what an MCP tool call adds over the same agent run started and
polled through the REST API.

    .venv/bin/python bench/mcp_overhead.py [--runs 30]

Self-contained like bench/engine.py: embedded PostgreSQL and Valkey in .local/bench/ (or
DATABASE_URL / REDIS_URL), a fresh database `bench_mcp_<pid>` (dropped at the end), one
workspace with one agent on the offline model (exposed as an MCP tool) and an API key with the
`run` scope, a Celery worker (prefork × 1) and the whole ASGI application (config/asgi.py) under
uvicorn on a loopback port, in a thread.

- **rest**: `POST /api/v1/agents/{id}/runs/`, then `GET /api/v1/agents/{id}/runs/{run}/`
  until the run has finished, polled on the same schedule the MCP endpoint polls the run row
  (10 ms, ×1.5, at most 500 ms): the time until the client holds the answer.
- **mcp**: `tools/call` on one initialized session of the official `mcp` client (Streamable
  HTTP), which answers when the run has finished.

Both run the same agent with the same input, alternately, after warm-up. On a loaded machine
the figures are indicative only. The last line of stdout is machine-readable:
    mcp_overhead_median_ms=…
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where bench/http.py would hide
# the standard library's `http` package: the project root replaces it.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.engine import _admin, drop_database, ms, p95, say, setup_workspace, worker  # noqa: E402

POLL_FIRST, POLL_GROWTH, POLL_MOST = 0.01, 1.5, 0.5
QUESTION = "How long do refunds take?"


def serve() -> tuple[str, Any, threading.Thread]:
    import uvicorn

    from config.asgi import application

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(application, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{port}", server, thread


async def measure(base: str, slug: str, agent_id: int, secret: str, runs: int) -> dict[str, Any]:
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {secret}"}
    rest: list[float] = []
    mcp: list[float] = []
    tool = ""

    async def rest_once(http: httpx2.AsyncClient) -> float:
        began = time.perf_counter()
        started = await http.post(f"/api/v1/agents/{agent_id}/runs/", json={"input": QUESTION})
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        pause = POLL_FIRST
        while True:
            answer = await http.get(f"/api/v1/agents/{agent_id}/runs/{run_id}/")
            assert answer.status_code == 200, answer.text
            got = answer.json()
            if got["status"] in ("succeeded", "failed"):
                assert got["status"] == "succeeded", got
                return time.perf_counter() - began
            await anyio.sleep(pause)
            pause = min(pause * POLL_GROWTH, POLL_MOST)

    async def mcp_once(client: Client) -> float:
        began = time.perf_counter()
        result = await client.call_tool(tool, {"input": QUESTION})
        assert not result.is_error, result
        return time.perf_counter() - began

    mcp_http = create_mcp_http_client(headers=headers)
    url = f"{base}/mcp/w/{slug}/"
    async with (
        httpx2.AsyncClient(base_url=base, headers=headers, timeout=60) as http,
        mcp_http,
        Client(streamable_http_client(url, http_client=mcp_http)) as client,
    ):
        tool = (await client.list_tools()).tools[0].name
        for _ in range(3):  # warm-up: imports, connections, the worker's first tasks
            await rest_once(http)
            await mcp_once(client)
        for _ in range(runs):
            rest.append(await rest_once(http))
            mcp.append(await mcp_once(client))
    return {"rest": rest, "mcp": mcp}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="measured runs of each kind")
    args = parser.parse_args(argv)
    if args.runs < 3:
        raise SystemExit("--runs at least 3")
    database = f"bench_mcp_{os.getpid()}"

    from config.embedded import embedded_services

    with contextlib.ExitStack() as stack:
        os.environ.update(stack.enter_context(embedded_services(root=ROOT / ".local" / "bench")))
        _admin("CREATE DATABASE {}", database)
        stack.callback(drop_database, database)
        os.environ["BENCH_DATABASE_NAME"] = database
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        # The REST path polls quickly; the per-key rate limit (600/min) is not what we measure.
        os.environ["API_KEY_RATE"] = "100000/min"
        import anyio
        import django

        django.setup()
        from django_tenants.utils import schema_context

        from accounts.models import User
        from agents.services import agent_create
        from config.celery import app
        from tenants.models import Membership
        from tenants.permissions import Access
        from tenants.services import api_key_create

        workspace = setup_workspace()
        owner = User.objects.get(email="bench@bench.test")
        role = Membership.objects.get(user=owner, workspace=workspace).role
        access = Access(workspace=workspace, user=owner, role=role)
        with schema_context(workspace.schema_name):
            agent = agent_create(
                access=access, name="Bench", model="offline:demo", mcp_exposed=True
            )
        # run: start (REST) and call (MCP); workspace.view: read the run back (REST).
        _, secret = api_key_create(access=access, name="bench", scopes=["run", "workspace.view"])
        app.control.purge()
        stack.enter_context(worker(1, 300))
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        base, server, thread = serve()

        def stop() -> None:
            server.should_exit = True
            thread.join(10)

        stack.callback(stop)
        say(f"• {args.runs} runs each, REST then MCP, alternately, on {base}")
        results = anyio.run(measure, base, workspace.slug, agent.pk, secret, args.runs)

    rows = {kind: [ms(v) for v in values] for kind, values in results.items()}
    baseline = statistics.median(rows["rest"])
    print(f"{'path':<6} {'runs':>5} {'median ms':>10} {'p95 ms':>9} {'vs rest':>8}")
    for kind, values in rows.items():
        median = statistics.median(values)
        print(
            f"{kind:<6} {len(values):>5} {median:>10.1f} {p95(values):>9.1f} "
            f"{median / baseline:>8.2f}"
        )
    overhead = statistics.median(rows["mcp"]) - statistics.median(rows["rest"])
    print(f"mcp_overhead_median_ms={overhead:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
