"""Where the platform's backing services live.

Settings import this module, so it must never start anything: it only turns environment
variables (or the embedded defaults under `.local/`) into connection settings. Starting the
embedded servers is `config.embedded`'s job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent


def local_dir() -> Path:
    """Where embedded services keep their data (`AGENTMARKET_LOCAL_DIR`, default `.local/`)."""
    return Path(os.environ.get("AGENTMARKET_LOCAL_DIR", BASE_DIR / ".local")).resolve()


def embedded_database_url(root: Path) -> str:
    socket_dir = quote(str(root / "pg"), safe="")
    return f"postgres://postgres@{socket_dir}/postgres"


def embedded_redis_url(root: Path) -> str:
    return f"unix://{root / 'valkey' / 'valkey.sock'}"


def database_url() -> str:
    return os.environ.get("DATABASE_URL") or embedded_database_url(local_dir())


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or embedded_redis_url(local_dir())


def database_config(url: str) -> dict[str, Any]:
    """Django DATABASES entry for a URL; a percent-encoded host is a unix socket directory."""
    config: dict[str, Any] = environ.Env.db_url_config(url)
    config["HOST"] = unquote(str(config.get("HOST") or ""))
    config["ENGINE"] = "django_tenants.postgresql_backend"
    config.setdefault("OPTIONS", {})
    return config


# channels_redis waits for messages with BZPOPMIN for up to 5 s at a time; redis-py (8) gives
# every connection a 5 s socket timeout by default, so an idle websocket's blocking read raced
# it and failed with "Timeout reading from ...", dropping the connection every few seconds.
CHANNEL_LAYER_SOCKET_TIMEOUT_SECONDS = 30


def channel_layer_hosts(url: str) -> list[dict[str, Any]]:
    """The channel layer's Redis connection for `url` (TCP, TLS or unix socket): a read
    timeout well above the layer's blocking read, so only a dead server times out, plus
    keepalive and a health check for connections that sat idle behind a NAT or proxy."""
    host: dict[str, Any] = {
        "address": url,
        "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": 5,
        "health_check_interval": 15,
    }
    if urlsplit(url).scheme != "unix":  # a unix socket has no TCP keepalive to set
        host["socket_keepalive"] = True
    return [host]


def celery_broker_url(url: str) -> str:
    """Celery spells a redis unix socket `redis+socket://`; redis-py spells it `unix://`."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = f"?{parts.query}" if parts.query else ""
        return f"redis+socket://{parts.path}{query}"
    if parts.scheme == "rediss" and "ssl_cert_reqs" not in parts.query:
        # Celery refuses TLS URLs without it; this spelling is the one redis-py accepts too.
        separator = "&" if parts.query else "?"
        return f"{url}{separator}ssl_cert_reqs=required"
    return url


def metrics_dir() -> str:
    """prometheus_client's multiprocess directory (`PROMETHEUS_MULTIPROC_DIR`, default
    `.local/metrics`), created if missing and exported to the environment, so prometheus_client
    (imported later) and child processes (workers the dev command or a test starts) use it."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(local_dir() / "metrics")
    Path(path).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path
