"""`manage.py serve`: the web server, HTTP and websockets, in several processes.

    python manage.py serve [--bind HOST:PORT] [--workers N]

The one entry point production (README), `manage.py dev` and deploy/ use. It replaces itself
(exec) with uvicorn serving `config.asgi:application` (Django for HTTP, Channels for
websockets) in `--workers` processes sharing one listening socket; uvicorn's parent process
restarts a worker that dies and, on SIGTERM or SIGINT, stops accepting, lets requests in flight
finish and exits (docs/operations.md, "Serving"; docs/decisions.md 97).

Settings: production when DJANGO_SETTINGS_MODULE is unset (manage.py chooses them for this
command, as config/asgi.py does), so a forgotten variable stops the server at start.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

ASGI_APP = "config.serving:application"  # config.asgi, its database connections pooled
_BIND = re.compile(r"^(?:\[(?P<ipv6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\s]+)):(?P<port>\d{1,5})$")


def cpu_count() -> int:
    """CPUs this process may run on (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_workers(environ: Mapping[str, str] | None = None, cpus: int | None = None) -> int:
    """`WEB_CONCURRENCY` when set, else two processes per CPU (at least 2): a worker's Python
    runs on one CPU at a time and waits on PostgreSQL and Redis during a request, so two per
    CPU keep the CPUs busy; more only adds memory and connections (docs/decisions.md 97)."""
    source = os.environ if environ is None else environ
    configured = source.get("WEB_CONCURRENCY", "").strip()
    if configured:
        try:
            workers = int(configured)
        except ValueError:
            raise CommandError(
                f"WEB_CONCURRENCY must be a whole number of processes, not {configured!r}."
            ) from None
        if workers < 1:
            raise CommandError("WEB_CONCURRENCY must be at least 1.")
        return workers
    return max(2, 2 * (cpus if cpus is not None else cpu_count()))


def parse_bind(bind: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[IPv6]:PORT`) as (host, port); CommandError naming the problem."""
    match = _BIND.match(bind.strip())
    if not match:
        raise CommandError(f"--bind: expected HOST:PORT (e.g. 0.0.0.0:8000), got {bind!r}.")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise CommandError(f"--bind: the port must be between 1 and 65535, got {port}.")
    return match["ipv6"] or match["host"], port


def server_argv(*, host: str, port: int, workers: int) -> list[str]:
    """The server's command line (uvicorn's multi-process supervisor)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        ASGI_APP,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        # Django's ASGI handler has no lifespan protocol; without this every worker logs that.
        "--lifespan",
        "off",
        # RequestIdMiddleware logs each request with its id already.
        "--no-access-log",
        # X-Forwarded-For/-Proto from FORWARDED_ALLOW_IPS only (uvicorn reads the variable;
        # its default trusts 127.0.0.1, a proxy on the same host).
        "--proxy-headers",
        # Workers that finish their in-flight requests within this long after SIGTERM.
        "--timeout-graceful-shutdown",
        os.environ.get("WEB_GRACEFUL_TIMEOUT", "20"),
    ]


class Command(BaseCommand):
    help = "Serve HTTP and websockets (config.asgi) with several worker processes."
    requires_system_checks: list[str] = []  # checked by the workers' own start, not twice

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--bind",
            default=f"0.0.0.0:{os.environ.get('PORT', '8000')}",
            help="HOST:PORT to listen on (default 0.0.0.0:$PORT, PORT defaulting to 8000)",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="worker processes (default: WEB_CONCURRENCY, else 2 per CPU, at least 2)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = parse_bind(options["bind"])
        workers = options["workers"] if options["workers"] is not None else default_workers()
        if workers < 1:
            raise CommandError("--workers must be at least 1.")
        argv = server_argv(host=host, port=port, workers=workers)
        self.stderr.write(f"Serving {ASGI_APP} on {host}:{port} with {workers} worker processes")
        sys.stderr.flush()
        sys.stdout.flush()
        # The server takes this process's place: its pid, its signals (SIGTERM from a
        # supervisor, systemd or Kubernetes reaches uvicorn itself), and the settings module
        # manage.py chose, through the environment.
        os.execv(sys.executable, argv)  # noqa: S606
