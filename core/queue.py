"""Enqueueing Celery tasks by name: the one convention for services and tasks.

A tasks module imports the services it calls; services never import a tasks module. They send
the task by the name declared on its decorator (`@shared_task(name="agents.execute_run")`), so
the dependency points one way and no import cycle or function-level import is needed. Celery
resolves the name in the process's registry, so the task's declared options (queue, routing)
apply exactly as with `.delay()`, and tenant-schemas-celery adds the workspace schema header.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from celery import current_app


def enqueue(name: str, *args: Any, countdown: float | None = None) -> None:
    """Send task `name` with positional `args` (primitive ids: tasks re-fetch)."""
    options: dict[str, Any] = {} if countdown is None else {"countdown": countdown}
    current_app.send_task(name, args=args, **options)


def enqueue_many(
    name: str, calls: Iterable[tuple[tuple[Any, ...], float]], *, ignore_result: bool = False
) -> None:
    """Send task `name` once per `(args, countdown)` over one broker connection.
    `ignore_result`: as the task declares it (`.apply_async` would pass it; `send_task` does
    not know the decorator's), so the result backend does not wait for each message's result."""
    app = current_app
    with app.producer_or_acquire() as producer:
        for args, countdown in calls:
            app.send_task(
                name,
                args=args,
                countdown=countdown if countdown > 0 else None,
                producer=producer,
                ignore_result=ignore_result,
            )
