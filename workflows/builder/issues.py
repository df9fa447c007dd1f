"""Validator messages as the builder shows them: `steps[2] (classify).config.prompt: unknown
name 'inptu'` is split into the step it names, the path inside that step and the message, so
that the step form can put it beside its field and the lists can name the step."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.exceptions import ApplicationError

_STEP_PATH = re.compile(r"^steps\[(?P<index>\d+)\](?: \((?P<id>[^)]*)\))?(?:\.(?P<rest>.+))?$")


@dataclass(frozen=True)
class ShownIssue:
    text: str  # the whole message, as the validators wrote it
    path: str
    message: str
    step_id: str | None  # the step it names, if any
    step_path: str  # the path inside that step: "config.prompt", "" for the step itself


def split_issue(text: str) -> ShownIssue:
    path, sep, message = text.partition(": ")
    if not sep:
        return ShownIssue(text=text, path="", message=text, step_id=None, step_path="")
    match = _STEP_PATH.match(path)
    if match is None:
        return ShownIssue(text=text, path=path, message=message, step_id=None, step_path="")
    return ShownIssue(
        text=text,
        path=path,
        message=message,
        step_id=match.group("id"),
        step_path=match.group("rest") or "",
    )


def issue_texts(exc: ApplicationError) -> list[str]:
    """Every problem an error carries: the validators' list, other fields, or its message."""
    texts: list[str] = []
    for key, problems in exc.fields.items():
        for problem in problems:
            texts.append(problem if key in ("definition", "__all__") else f"{key}: {problem}")
    return texts or [exc.message]
