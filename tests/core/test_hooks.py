"""Hooks and vetoes: how a lower app tells or asks a higher one without importing it."""

from __future__ import annotations

import logging

import pytest

from core.exceptions import ApplicationError, Conflict
from core.hooks import Hook, Veto


def test_a_hook_calls_every_subscriber_once_and_a_failing_one_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook: Hook[int] = Hook("numbers")
    seen: list[int] = []

    def broken(n: int) -> None:
        raise RuntimeError("down")

    hook.subscribe(broken)
    hook.subscribe(seen.append)
    hook.subscribe(seen.append)  # subscribing twice (ready() ran twice) delivers once
    with caplog.at_level(logging.WARNING):
        hook.fire(7)
    assert seen == [7]
    assert "hook numbers" in caplog.text
    assert "broken" in caplog.text


def test_a_veto_lets_an_application_error_refuse_and_ignores_a_broken_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    veto: Veto[str] = Veto("inviting")

    def broken(email: str) -> None:
        raise RuntimeError("database hiccup")

    def full(email: str) -> None:
        if email.endswith("@full.test"):
            raise Conflict("No seats left.")

    veto.subscribe(broken)
    veto.subscribe(full)
    with caplog.at_level(logging.WARNING):
        veto.check("a@ok.test")  # the broken check refuses nothing
    assert "veto inviting" in caplog.text
    with pytest.raises(ApplicationError, match="No seats left"):
        veto.check("b@full.test")
