"""The suite talks to loopback only: pytest-socket (configured in pyproject's addopts) refuses
any other connection, so a test that would reach the internet fails instead of passing on a
developer's machine and hanging in CI."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from pytest_socket import SocketConnectBlockedError


def test_a_connection_beyond_loopback_is_refused() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(SocketConnectBlockedError),
    ):
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1: never routable


def test_an_http_client_cannot_reach_a_public_address() -> None:
    with pytest.raises(SocketConnectBlockedError):
        urllib.request.urlopen("http://203.0.113.7/", timeout=1)


def test_loopback_stays_open() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2) as client:
            accepted, _ = server.accept()
            accepted.sendall(b"ok")
            assert client.recv(2) == b"ok"
            accepted.close()
