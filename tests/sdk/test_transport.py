"""The client's own behaviour where the real server cannot fail on cue (a loopback fake
answers): GETs are retried on 503 and connection errors a bounded number of times, POSTs never;
each error status becomes its exception with the API's message and field errors. And the
package stands alone: importing it loads no Django and nothing of the project."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from agentmarket import (
    Client,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
)

from tests.fakes.scripted_http import ScriptedHTTP

WORKSPACE = {"id": 1, "name": "Alpha Inc", "slug": "alpha", "created_at": "2026-01-01T00:00:00Z"}
DOWN = {"error": {"code": "service_unavailable", "message": "The database is unavailable."}}


def test_a_get_is_retried_on_503_and_waits_what_retry_after_says() -> None:
    waits: list[float] = []
    with ScriptedHTTP() as fake:
        fake.queue(503, DOWN, {"Retry-After": "3"})
        fake.queue(503, DOWN)
        fake.queue(200, WORKSPACE)
        workspace = Client(fake.base_url, "amk_x_y", sleep=waits.append).workspace()

    assert workspace.slug == "alpha"
    assert len(fake.requests) == 3
    assert waits == [3.0, 1.0]  # Retry-After, then the backoff (0.5 * 2**1)


def test_retries_are_bounded_then_the_503_is_raised_with_the_apis_message() -> None:
    with ScriptedHTTP() as fake:
        for _ in range(5):
            fake.queue(503, DOWN)
        client = Client(fake.base_url, "amk_x_y", retries=2, sleep=lambda _: None)
        with pytest.raises(ServiceUnavailable, match=r"The database is unavailable\."):
            client.workspace()

    assert len(fake.requests) == 3


def test_a_post_is_never_retried() -> None:
    with ScriptedHTTP() as fake:
        fake.queue(503, DOWN)
        client = Client(fake.base_url, "amk_x_y", sleep=lambda _: None)
        with pytest.raises(ServiceUnavailable):
            client.start_agent_run(1, "hello")

    assert fake.requests == [("POST", "/api/v1/agents/1/runs/")]


def test_a_server_that_is_not_there_is_a_connection_error_after_the_retries() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    client = Client(f"http://127.0.0.1:{port}", "amk_x_y", retries=2, sleep=waits.append)

    with pytest.raises(ConnectionFailed, match=f"Could not reach http://127.0.0.1:{port}"):
        client.workspace()
    assert waits == [0.5, 1.0]


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, InvalidRequest),
        (403, PermissionDenied),
        (404, NotFound),
        (409, Conflict),
        (422, InvalidRequest),
        (429, RateLimited),
    ],
)
def test_each_error_status_is_its_exception_with_message_fields_and_retry_after(
    status: int, exception: type[Exception]
) -> None:
    body = {
        "error": {
            "code": "x",
            "message": "Some fields are invalid: input",
            "fields": {"input": ["This field is required."]},
        }
    }
    with ScriptedHTTP() as fake:
        fake.queue(status, body, {"Retry-After": "7"})
        with pytest.raises(exception) as raised:
            Client(fake.base_url, "amk_x_y").start_agent_run(1, "x")

    error = raised.value
    assert error.status == status
    assert error.message == "Some fields are invalid: input"
    assert error.fields == {"input": ["This field is required."]}
    assert error.retry_after == 7.0
    assert str(error) == "Some fields are invalid: input (input: This field is required.)"


def test_the_package_imports_no_django_and_nothing_of_the_project() -> None:
    project = {"django", "config", "core", "accounts", "tenants", "agents", "workflows"}
    script = (
        "import sys, agentmarket, agentmarket.cli\n"
        f"loaded = {{m.split('.')[0] for m in sys.modules}} & {project!r}\n"
        "print(sorted(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd="/"
    )
    assert result.stdout.strip() == "[]"
