"""Keep the local platform's processes running: `manage.py dev` starts the ASGI server, a Celery
worker and beat, and restarts a worker or beat that exits (a broker outage can make Celery's
main process exit; runs then wait in the database until a worker is back). A process that keeps
exiting is given up after `max_restarts` within `window_seconds`, and the server is never
restarted: its exit stops everything, as the person at the terminal expects."""

from __future__ import annotations

import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Child:
    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    restart: bool  # False: its exit stops everything
    process: subprocess.Popen[bytes] | None = None
    restarts: deque[float] = field(default_factory=deque)


class Supervisor:
    def __init__(
        self,
        children: list[Child],
        *,
        say: Callable[[str], None],
        max_restarts: int = 5,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = children
        self.say = say
        self.max_restarts = max_restarts
        self.window_seconds = window_seconds
        self.clock = clock

    def start(self) -> None:
        for child in self.children:
            child.process = child.start()

    def check(self) -> bool:
        """Restart what exited and may be restarted; False when everything must stop."""
        for child in self.children:
            process = child.process
            if process is None or process.poll() is None:
                continue
            code = process.returncode
            if not child.restart:
                self.say(f"{child.name} exited with code {code}; stopping.")
                return False
            now = self.clock()
            while child.restarts and now - child.restarts[0] > self.window_seconds:
                child.restarts.popleft()
            if len(child.restarts) >= self.max_restarts:
                self.say(
                    f"{child.name} exited with code {code} {self.max_restarts} times within "
                    f"{self.window_seconds:.0f} s; stopping."
                )
                return False
            child.restarts.append(now)
            self.say(f"{child.name} exited with code {code}; restarting it.")
            child.process = child.start()
        return True

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [child.process for child in self.children if child.process is not None]
