"""`manage.py dev`: the whole platform on one machine, stopped by Ctrl-C.

Starts embedded PostgreSQL and Valkey (unless DATABASE_URL / REDIS_URL are set), migrates the
public schema and every workspace, provisions the workspace template, seeds the demo, then runs
the web server (`manage.py serve`: HTTP and websockets, `--workers` processes), a Celery worker
and Celery beat (workflow schedules, stalled-run recovery, run retention) until interrupted. A
worker or beat that exits is restarted (core/supervise.py); the server's exit stops everything.

Billing: with no Stripe key configured, the Stripe emulator (tests/fakes/stripe_serve.py, a
loopback fake of Stripe's API with stand-in hosted pages) runs as one more supervised process
and the platform uses it in test mode ("Billing test mode — no real money"); the plans are
mirrored to it after the seed and the dev server's webhook endpoint is registered with it
(`billing_webhook_endpoint`), so its events reach the platform. Its state is kept in
`.local/stripe-emulator.json`. It refuses to start under production settings. With a Stripe
key in the environment, the platform uses Stripe itself and no emulator runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from billing.stripe_client import billing_mode
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


# Accepted only by the loopback emulator; never a Stripe key. Shaped like one (dj-stripe
# checks `sk_test_` and 24+ letters or digits).
EMULATOR_KEY = "sk_test_EmulatorLocalDevelopmentOnly"
PRODUCTION_SETTINGS = "config.settings.production"


def stripe_configured() -> bool:
    return bool(settings.STRIPE_TEST_SECRET_KEY or settings.STRIPE_LIVE_SECRET_KEY)


def stripe_emulator_refusal() -> str | None:
    """Why the Stripe emulator must not run with these settings, or None: it is for a
    developer's machine (DEBUG on, not the production settings module)."""
    module = settings.SETTINGS_MODULE
    if module != PRODUCTION_SETTINGS and settings.DEBUG:
        return None
    return (
        "Billing test mode (the Stripe emulator) runs only with development settings; these "
        f"are {module} with DEBUG {'on' if settings.DEBUG else 'off'}. Set "
        "STRIPE_TEST_SECRET_KEY (or STRIPE_LIVE_SECRET_KEY with STRIPE_LIVE_MODE=true) to use "
        "Stripe itself, or pass --no-billing-emulator to run without billing."
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def emulator_environment(port: int) -> dict[str, str]:
    """What points the platform's processes at the emulator, in test mode."""
    return {
        "STRIPE_TEST_SECRET_KEY": EMULATOR_KEY,
        "STRIPE_LIVE_MODE": "false",
        "STRIPE_API_BASE": f"http://127.0.0.1:{port}",
    }


def emulator_launcher(*, port: int, state: Path) -> Callable[[], subprocess.Popen[bytes]]:
    command = [
        sys.executable,
        "-m",
        "tests.fakes.stripe_serve",
        "--port",
        str(port),
        "--api-key",
        EMULATOR_KEY,
        "--state",
        str(state),
    ]
    return lambda: subprocess.Popen(command, cwd=settings.BASE_DIR, start_new_session=True)


def wait_until_serving(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Return once 127.0.0.1:port accepts connections; CommandError if the process exits or
    the deadline passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(f"The Stripe emulator exited with code {process.returncode}.")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise CommandError(f"The Stripe emulator did not listen on port {port} within {timeout}s.")


@contextlib.contextmanager
def stripe_emulator(root: Path) -> Iterator[tuple[Child, dict[str, str]]]:
    """Start the emulator (serving when this yields) as a supervised, restartable child with
    a fixed port; yield it and the environment that points the platform at it. Stopped on
    exit unless the supervisor already stopped it."""
    port = free_port()
    launch = emulator_launcher(port=port, state=root / "stripe-emulator.json")
    first = launch()
    started = [first]
    child = Child("stripe emulator", lambda: started.pop() if started else launch(), restart=True)
    try:
        wait_until_serving(port, first)
        yield child, emulator_environment(port)
    finally:
        process = child.process or first
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)


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
        parser.add_argument(
            "--workers", type=int, default=2, help="web server processes (manage.py serve)"
        )
        parser.add_argument(
            "--no-billing-emulator",
            action="store_true",
            help="without Stripe keys, run with billing off instead of in billing test mode",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        emulate = not stripe_configured() and not options["no_billing_emulator"]
        if emulate and (problem := stripe_emulator_refusal()):
            raise CommandError(problem)
        # A SIGTERM while migrating must still stop the embedded servers (the `with` exits).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        with contextlib.ExitStack() as stack:
            env = stack.enter_context(embedded_services())
            os.environ.update(env)
            extra: list[Child] = []
            if emulate:
                emulator, stripe_env = stack.enter_context(stripe_emulator(services.local_dir()))
                env.update(stripe_env)
                extra.append(emulator)
                self.stdout.write(
                    f"• Stripe: the emulator at {stripe_env['STRIPE_API_BASE']} "
                    "(Billing test mode — no real money)"
                )
            else:
                self.stdout.write(f"• {billing_mode()}")
            self.stdout.write("• Migrating the public schema and all workspaces…")
            call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
            call_command("migrate_workspaces", verbosity=0)  # the template first, then the rest
            embedded_database = "DATABASE_URL" in env
            seeded = options["seed"] or (embedded_database and not options["no_seed"])
            if seeded:
                call_command("seed_demo")
            elif not options["no_seed"]:
                self.stdout.write("• Demo seed skipped: DATABASE_URL is set (use --seed to force).")
            connections.close_all()
            child_env = child_environment(env, host=options["host"], port=options["port"])
            if emulate:
                self._billing_setup(child_env, seeded=seeded)
            self._serve(child_env, options, extra)

    def _billing_setup(self, child_env: dict[str, str], *, seeded: bool) -> None:
        """Mirror the plans to the emulator and register the dev server's webhook endpoint
        with it (so its events reach dj-stripe's view), in processes that read the emulator's
        settings from their environment like the server and worker do; after the demo seed,
        add its paid listing (whose summary is shown). A failure is reported, not fatal: the
        platform still runs, and the commands can be run again by hand."""
        self.stdout.write("• Mirroring the plans to the Stripe emulator and registering webhooks…")
        commands = [
            ["billing_sync_plans"],
            ["billing_webhook_endpoint", "--url", child_env["SITE_URL"]],
        ]
        if seeded:  # the paid demo listing: needs the emulator and the demo's logins
            commands.append(["seed_demo_shop"])
        for command in commands:
            done = subprocess.run(
                [sys.executable, "manage.py", *command, "-v", "0"],
                cwd=settings.BASE_DIR,
                env=child_env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                self.stderr.write(
                    f"  {command[0]} failed; billing test mode may not work fully:\n"
                    + (done.stderr.strip() or done.stdout.strip())
                )
            elif command[0] == "seed_demo_shop" and done.stdout.strip():
                self.stdout.write(done.stdout.rstrip())

    def _serve(
        self, child_env: dict[str, str], options: dict[str, Any], extra: list[Child]
    ) -> None:
        python = sys.executable

        def launcher(*arguments: str) -> Any:
            # Own process groups: we stop them ourselves, Celery's pool children included.
            return lambda: subprocess.Popen(
                [python, "-m", *arguments], env=child_env, start_new_session=True
            )

        supervisor = Supervisor(
            [
                # The production web server (`manage.py serve`), with the dev settings this
                # command runs under (the environment carries DJANGO_SETTINGS_MODULE).
                Child(
                    "web server",
                    lambda: subprocess.Popen(
                        [
                            python,
                            str(Path(settings.BASE_DIR) / "manage.py"),
                            "serve",
                            "--bind",
                            f"{options['host']}:{options['port']}",
                            "--workers",
                            str(options["workers"]),
                        ],
                        env=child_env,
                        start_new_session=True,
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
                *extra,
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
            self.stdout.write("\n• Stopping the ASGI server, the worker, beat and the emulator…")
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
