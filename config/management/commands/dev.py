"""`manage.py dev`: the whole platform on one machine, stopped by Ctrl-C.

Starts embedded PostgreSQL and Valkey (unless DATABASE_URL / REDIS_URL are set), migrates the
public schema and every workspace, provisions the workspace template, seeds the demo, then runs
daphne, a Celery worker and Celery beat (workflow schedules, stalled-run recovery, run
retention) until interrupted. A worker or beat that exits is restarted (core/supervise.py); the
server's exit stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from config import services
from config.embedded import embedded_services
from core.supervise import Child, Supervisor


def site_url(host: str, port: int) -> str:
    """The address the dev server answers on, as links in emails and webhooks must spell it."""
    name = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "::1") else host  # noqa: S104
    return f"http://{name}:{port}"


def child_environment(env: dict[str, str], *, host: str, port: int) -> dict[str, str]:
    """The server's and worker's environment: the embedded services' URLs, and SITE_URL for
    the port actually served (invitation links, trigger URLs), unless SITE_URL is set."""
    child = {**os.environ, **env}
    child.setdefault("SITE_URL", site_url(host, port))
    return child


class Command(BaseCommand):
    help = "Run the platform locally: services, migrations, demo seed, ASGI server, worker, beat."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--no-seed", action="store_true", help="skip the demo seed")
        parser.add_argument(
            "--seed",
            action="store_true",
            help="seed the demo even into DATABASE_URL (it creates known logins: dev only)",
        )
        parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")

    def handle(self, *args: Any, **options: Any) -> None:
        # A SIGTERM while migrating must still stop the embedded servers (the `with` exits).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        with embedded_services() as env:
            os.environ.update(env)
            self.stdout.write("• Migrating the public schema and all workspaces…")
            call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
            call_command("migrate_workspaces", verbosity=0)  # the template first, then the rest
            embedded_database = "DATABASE_URL" in env
            if options["seed"] or (embedded_database and not options["no_seed"]):
                call_command("seed_demo")
            elif not options["no_seed"]:
                self.stdout.write("• Demo seed skipped: DATABASE_URL is set (use --seed to force).")
            connections.close_all()
            self._serve(env, options)

    def _serve(self, env: dict[str, str], options: dict[str, Any]) -> None:
        child_env = child_environment(env, host=options["host"], port=options["port"])
        python = sys.executable

        def launcher(*arguments: str) -> Any:
            # Own process groups: we stop them ourselves, Celery's pool children included.
            return lambda: subprocess.Popen(
                [python, "-m", *arguments], env=child_env, start_new_session=True
            )

        supervisor = Supervisor(
            [
                Child(
                    "daphne",
                    launcher(
                        "daphne",
                        "-b",
                        options["host"],
                        "-p",
                        str(options["port"]),
                        "config.asgi:application",
                    ),
                    restart=False,
                ),
                Child(
                    "celery worker",
                    launcher(
                        "celery",
                        "-A",
                        "config",
                        "worker",
                        "--loglevel",
                        "INFO",
                        "--concurrency",
                        str(options["concurrency"]),
                        "-Q",
                        settings.CELERY_TASK_DEFAULT_QUEUE,
                        "--without-gossip",
                        "--without-mingle",
                    ),
                    restart=True,
                ),
                # One beat for the periodic tasks (CELERY_BEAT_SCHEDULE); its state file lives
                # with the rest of the local data.
                Child(
                    "celery beat",
                    launcher(
                        "celery",
                        "-A",
                        "config",
                        "beat",
                        "--loglevel",
                        "WARNING",
                        "--schedule",
                        str(services.local_dir() / "celerybeat-schedule"),
                    ),
                    restart=True,
                ),
            ],
            say=self.stderr.write,
        )
        supervisor.start()
        url = site_url(options["host"], options["port"]) + "/"
        self.stdout.write(self.style.SUCCESS(f"\n  Agent Market is running at {url}"))
        self.stdout.write("  Press Ctrl-C to stop everything.\n")

        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and supervisor.check():
                time.sleep(0.5)
        finally:
            self.stdout.write("\n• Stopping the ASGI server, the worker and beat…")
            processes = supervisor.processes()
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for process in processes:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)  # Celery's pool children too
            self.stdout.write("• Stopped. Data is kept in .local/ for the next start.")
