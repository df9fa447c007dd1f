"""`manage.py serve`, the one web server entry point (README, `manage.py dev`, deploy/): it
serves HTTP and websockets from several worker processes and stops cleanly on SIGTERM. The
server is a real process on the test database; the client is a plain HTTP and websocket client
on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management.base import CommandError
from django.test import Client
from websockets.sync.client import connect
from websockets.typing import Origin

from config.management.commands.serve import default_workers, parse_bind, server_argv
from tests.helpers.personas import World
from tests.helpers.processes import worker_environment

ROOT = Path(settings.BASE_DIR)


def test_workers_come_from_web_concurrency_else_two_per_cpu() -> None:
    assert default_workers({"WEB_CONCURRENCY": "3"}, cpus=8) == 3
    assert default_workers({}, cpus=2) == 4
    assert default_workers({}, cpus=1) == 2  # never a single process by default
    assert default_workers({"WEB_CONCURRENCY": " "}, cpus=4) == 8


@pytest.mark.parametrize("value", ["many", "0", "-2"])
def test_a_bad_web_concurrency_is_refused_with_its_name(value: str) -> None:
    with pytest.raises(CommandError, match="WEB_CONCURRENCY"):
        default_workers({"WEB_CONCURRENCY": value}, cpus=2)


def test_bind_takes_host_and_port_and_names_the_problem() -> None:
    assert parse_bind("0.0.0.0:8000") == ("0.0.0.0", 8000)  # noqa: S104
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    for bad in ("8000", "localhost", "host:port", "1.2.3.4:70000"):
        with pytest.raises(CommandError, match="--bind"):
            parse_bind(bad)


def test_the_server_serves_the_pooled_application_in_several_workers() -> None:
    argv = server_argv(host="127.0.0.1", port=8123, workers=3)
    assert argv[argv.index("--workers") + 1] == "3"
    assert "config.serving:application" in argv
    assert argv[argv.index("--port") + 1] == "8123"


# --- the real server ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _workers(pid: int) -> list[int]:
    """The server's worker processes (multiprocessing's resource tracker is a child too)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    children = [int(child) for child in text.split()]
    return [
        child
        for child in children
        if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def _get(url: str, *, timeout: float = 10) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (loopback)
        return int(answer.status), answer.read()


def _wait_for_health(url: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"manage.py serve exited with {process.returncode}"
        with contextlib.suppress(OSError):
            if _get(f"{url}/healthz", timeout=2)[0] == 200:
                return
        # Between tries, wait on the process itself: an exit ends the wait at once.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.1)
    raise AssertionError(f"manage.py serve did not answer /healthz within {timeout} s")


@pytest.fixture
def served() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`manage.py serve --workers 2` on a free loopback port, on the test database."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env={**worker_environment(), "LOG_LEVEL": "WARNING"},
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_health(url, process)
        yield url, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.django_db(transaction=True)
def test_serve_answers_http_and_websockets_from_two_workers_and_stops_on_sigterm(
    committed_world: World, served: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, process = served
    workers = _workers(process.pid)

    # Two worker processes under the one the supervisor started, both serving.
    assert len(workers) == 2
    for _ in range(20):
        assert _get(f"{url}/healthz") == (200, b'{"status": "ok"}')
    status, body = _get(f"{url}/readyz")  # PostgreSQL (through the pool) and Redis
    assert status == 200, body

    # A member's websocket: the presence consumer accepts and lists them.
    client = Client()
    client.force_login(committed_world.member)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    slug = committed_world.workspace_a.slug
    with connect(
        f"{url.replace('http', 'ws')}/ws/w/{slug}/presence/",
        additional_headers={"Cookie": cookie},
        origin=Origin(url),
        open_timeout=20,
    ) as socket_:
        message = socket_.recv(timeout=20)
        assert committed_world.member.email in str(message)

    # SIGTERM (a deploy, Ctrl-C, Kubernetes) stops the workers and the server, exit code 0.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
