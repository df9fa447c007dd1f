"""Where `agentmarket login` keeps the server address and the key: a JSON file only its owner
can read (0600), at `$AGENTMARKET_CONFIG` or `~/.config/agentmarket/config.json`.
`AGENTMARKET_URL` and `AGENTMARKET_API_KEY` override what the file says."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    base_url: str
    api_key: str


def config_path() -> Path:
    explicit = os.environ.get("AGENTMARKET_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "agentmarket" / "config.json"


def load() -> Settings | None:
    """The saved settings with the environment's overrides; None when neither has both."""
    saved: dict[str, str] = {}
    path = config_path()
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict):
            saved = {k: str(v) for k, v in data.items() if isinstance(v, str)}
    base_url = os.environ.get("AGENTMARKET_URL") or saved.get("base_url", "")
    api_key = os.environ.get("AGENTMARKET_API_KEY") or saved.get("api_key", "")
    if not base_url or not api_key:
        return None
    return Settings(base_url=base_url, api_key=api_key)


def save(settings: Settings) -> Path:
    """Write the file with mode 0600 from the start (never readable by others, even briefly)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps({"base_url": settings.base_url, "api_key": settings.api_key}, indent=2)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    path.chmod(0o600)  # an existing file keeps its old mode through os.open
    return path


def remove() -> bool:
    path = config_path()
    if path.is_file():
        path.unlink()
        return True
    return False
