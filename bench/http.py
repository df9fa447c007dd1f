"""Benchmark the platform over HTTP as production serves it: requests/s, p50 and p99 per endpoint.

    .venv/bin/python bench/http.py [--duration 10] [--connections 16] [--workers N] [--tiny]

Self-contained like bench/gateway.py: without DATABASE_URL / REDIS_URL it starts its own
embedded PostgreSQL and Valkey in .local/bench/ and works in a fresh database `bench_http_<pid>`
(dropped at the end). The platform runs as production runs it: `config.settings.production`
(DEBUG off, collected static files), `python manage.py serve --bind 127.0.0.1:<port>
--workers N` (N defaults to the command's own default). The seed: the demo workspace (its agents
plus more to make 13), the shipped marketplace catalogue, an API key, a signed-in session.
Throttle rates are raised so the per-key limit (600/min) does not cap the figures: the throttle
still runs on every API request.

The load generator is `wrk` (`apt-get install -y wrk`) on loopback, `--connections` connections
and 2 threads, `--duration` seconds per endpoint after a warm-up of every endpoint. Endpoints:
`/healthz` (the baseline: no database), `GET /api/v1/agents/` with the key, `POST` of a run with
the key (202; the runs queue up: no worker runs here), the public `/marketplace/` front page,
a marketplace search, and a workspace page (the agents page) with the session. Each endpoint's
requests/s is given as a ratio of /healthz's in the same run.

`--tiny` (the smoke test's mode): 1 s per endpoint, 2 connections, 2 workers.

The last line of stdout is machine-readable:
    healthz_rps=… api_list_rps=… api_list_p99_ms=… marketplace_rps=… marketplace_p99_ms=…
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this module's name would
# hide the standard library's `http` package (urllib and psycopg import it).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.request  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

API_LIST_TARGET_RPS = 400.0
MARKETPLACE_TARGET_RPS = 250.0
MARKETPLACE_P99_TARGET_MS = 100.0
AGENTS = 13
WRK_MISSING = (
    "wrk is not installed: this bench drives the server with it. Install it with "
    "`apt-get install -y wrk` (Debian/Ubuntu) and run again."
)


def say(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Endpoint:
    key: str  # for the last line
    label: str
    path: str
    method: str = "GET"
    headers: dict[str, str] | None = None
    body: str = ""
    expect: int = 200


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx answers and socket errors


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def admin_sql(url: str, statement: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(name)))


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def production_environment(base: dict[str, str], *, database_url: str) -> dict[str, str]:
    """What an operator sets, pointed at the bench's services and loopback."""
    return {
        **base,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "bench-http-" + "x" * 40,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "EMAIL_URL": "smtp://127.0.0.1:25",  # never used: nothing here sends mail
        "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback, no TLS proxy in front
        "CACHE_KEY_PREFIX": f"bench-http-{os.getpid()}",
        "CHANNELS_PREFIX": f"bench-http-{os.getpid()}",
        "CELERY_DEFAULT_QUEUE": f"bench-http-{os.getpid()}",
        "API_KEY_RATE": "1000000/min",
        "API_USER_RATE": "1000000/min",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def manage(env: dict[str, str], *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(arguments)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


SEED = """
import json
from django.test import Client
from agents.models import Agent
from config.demo import seed_demo
from tenants.models import Role
from tenants.permissions import Access
from tenants.services import api_key_create
from tenants.permissions import API_KEY_SCOPES
from agents.demo import DEMO_ALIAS
from django_tenants.utils import schema_context
from agents import services as agent_services
result = seed_demo(password="bench-password-1")
workspace = result.workspace
from accounts.models import User
owner = User.objects.get(email="owner@demo.local")
access = Access(workspace=workspace, user=owner, role=Role.OWNER)
with schema_context(workspace.schema_name):
    agents = list(Agent.objects.order_by("pk"))
    for i in range(len(agents), AGENTS):
        agent_services.agent_create(
            access=access, name=f"Bench agent {i}", description="Answers bench questions.",
            model=DEMO_ALIAS,
        )
    agent_ids = list(Agent.objects.order_by("pk").values_list("pk", flat=True))
_, secret = api_key_create(access=access, name="bench", scopes=list(API_KEY_SCOPES))
client = Client()
client.force_login(owner)
print(json.dumps({
    "slug": workspace.slug, "agents": agent_ids, "secret": secret,
    "session": client.cookies["sessionid"].value,
}))
"""


def seed(env: dict[str, str]) -> dict[str, Any]:
    code = f"AGENTS = {AGENTS}\n" + SEED
    out = manage(env, "shell", "-c", code)
    return dict(json.loads(out.strip().splitlines()[-1]))


def wait_until_healthy(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"manage.py serve exited with code {process.returncode}")
        url = f"http://127.0.0.1:{port}/healthz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /healthz within {timeout:.0f} s")


def check(port: int, endpoint: Endpoint) -> None:
    """One request first: a wrong status (a 403, a redirect to sign in) would make the
    figures meaningless."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{endpoint.path}",
        data=endpoint.body.encode() if endpoint.body else None,
        headers=endpoint.headers or {},
        method=endpoint.method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    if status != endpoint.expect:
        raise RuntimeError(f"{endpoint.method} {endpoint.path} answered {status}")


LUA = """
wrk.method = {method}
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  io.write(string.format("BENCH %d %d %d %d %d %d\\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout + summary.errors.status,
    summary.duration, latency:percentile(50), latency:percentile(99), 0))
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string literal for our ASCII values


def wrk(
    port: int, endpoint: Endpoint, *, duration: float, connections: int, folder: Path
) -> Result:
    script = folder / f"{endpoint.key}.lua"
    headers = "\n".join(
        f"wrk.headers[{lua_string(k)}] = {lua_string(v)}"
        for k, v in (endpoint.headers or {}).items()
    )
    script.write_text(
        LUA.format(
            method=lua_string(endpoint.method), body=lua_string(endpoint.body), headers=headers
        )
    )
    done = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(2, connections)),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{endpoint.path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"^BENCH (\d+) (\d+) (\d+) (\d+) (\d+)", done.stdout, re.M)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{done.stdout}\n{done.stderr}")
    requests, errors, duration_us, p50_us, p99_us = (int(g) for g in match.groups())
    return Result(
        rps=requests / (duration_us / 1e6),
        p50_ms=p50_us / 1000,
        p99_ms=p99_us / 1000,
        requests=requests,
        errors=errors,
    )


def endpoints(seeded: dict[str, Any]) -> list[Endpoint]:
    key = {"Authorization": f"Bearer {seeded['secret']}"}
    agent = seeded["agents"][0]
    session = {"Cookie": f"sessionid={seeded['session']}"}
    return [
        Endpoint("healthz", "/healthz (baseline)", "/healthz"),
        Endpoint(
            "api_list",
            f"GET /api/v1/agents/ ({len(seeded['agents'])} agents)",
            "/api/v1/agents/",
            headers=key,
        ),
        Endpoint(
            "api_run",
            "POST /api/v1/agents/<id>/runs/",
            f"/api/v1/agents/{agent}/runs/",
            method="POST",
            headers={**key, "Content-Type": "application/json"},
            body=json.dumps({"input": "How do I reset my password?"}),
            expect=202,
        ),
        Endpoint("marketplace", "/marketplace/ (front page)", "/marketplace/"),
        Endpoint("search", "/marketplace/?q=email+support", "/marketplace/?q=email+support"),
        Endpoint(
            "workspace",
            f"/w/{seeded['slug']}/agents/ (signed in)",
            f"/w/{seeded['slug']}/agents/",
            headers=session,
        ),
    ]


def table(rows: list[tuple[Endpoint, Result]]) -> None:
    base = rows[0][1].rps
    print("| endpoint | requests/s | p50 ms | p99 ms | ratio to /healthz | errors |")
    print("| --- | --: | --: | --: | --: | --: |")
    for endpoint, r in rows:
        print(
            f"| {endpoint.label} | {r.rps:.1f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.rps / base:.2f}× | {r.errors} |"
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per endpoint")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="manage.py serve --workers")
    parser.add_argument("--tiny", action="store_true", help="smoke-test mode (seconds)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.duration, args.connections, args.workers = 1.0, 2, args.workers or 2
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        return 2

    from config.embedded import embedded_services

    database = f"bench_http_{os.getpid()}"
    failed = False
    rows: list[tuple[Endpoint, Result]] = []
    with contextlib.ExitStack() as stack:
        services = stack.enter_context(embedded_services(root=ROOT / ".local" / "bench"))
        base_env = {**os.environ, **services}
        admin_url = base_env["DATABASE_URL"]
        admin_sql(admin_url, "CREATE DATABASE {}", database)
        stack.callback(admin_sql, admin_url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", database)
        env = production_environment(base_env, database_url=with_database(admin_url, database))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-http-")))
        try:
            say(f"• database {database}: migrating (production settings)…")
            manage(env, "migrate_schemas", "--shared", "--verbosity", "0")
            manage(env, "migrate_workspaces", "--verbosity", "0")
            manage(env, "collectstatic", "--noinput", "--verbosity", "0")
            say("• seeding the demo workspace, agents, catalogue, an API key, a session…")
            seeded = seed(env)
            port = free_port()
            command = [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"]
            if args.workers:
                command += ["--workers", str(args.workers)]
            say(f"• {' '.join(command[1:])}")
            server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
            stack.callback(stop, server)
            wait_until_healthy(port, server, timeout=60)
            chosen = endpoints(seeded)
            for endpoint in chosen:
                check(port, endpoint)
            say("• warm-up: every endpoint for 2 s")
            for endpoint in chosen:
                wrk(
                    port,
                    endpoint,
                    duration=2 if not args.tiny else 1,
                    connections=args.connections,
                    folder=folder,
                )
            for endpoint in chosen:
                say(f"• {endpoint.label}: {args.connections} connections, {args.duration:.0f} s")
                rows.append(
                    (
                        endpoint,
                        wrk(
                            port,
                            endpoint,
                            duration=args.duration,
                            connections=args.connections,
                            folder=folder,
                        ),
                    )
                )
        except BaseException:
            failed = True
            traceback.print_exc(file=sys.stderr)
    if failed:
        return 1
    table(rows)
    by_key = {endpoint.key: result for endpoint, result in rows}
    api, market = by_key["api_list"], by_key["marketplace"]
    print()
    verdict = "met" if api.rps >= API_LIST_TARGET_RPS else "MISSED"
    print(f"API list: {api.rps:.1f} requests/s (target ≥ {API_LIST_TARGET_RPS:.0f}: {verdict})")
    verdict = (
        "met"
        if market.rps >= MARKETPLACE_TARGET_RPS and market.p99_ms < MARKETPLACE_P99_TARGET_MS
        else "MISSED"
    )
    print(
        f"marketplace front page: {market.rps:.1f} requests/s, p99 {market.p99_ms:.1f} ms "
        f"(target ≥ {MARKETPLACE_TARGET_RPS:.0f} and p99 < {MARKETPLACE_P99_TARGET_MS:.0f} ms: "
        f"{verdict})"
    )
    print(
        f"healthz_rps={by_key['healthz'].rps:.1f} api_list_rps={api.rps:.1f} "
        f"api_list_p99_ms={api.p99_ms:.2f} marketplace_rps={market.rps:.1f} "
        f"marketplace_p99_ms={market.p99_ms:.2f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
