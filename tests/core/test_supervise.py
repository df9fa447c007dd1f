"""`manage.py dev` keeps its worker and beat running: a Celery main process can exit during a
broker outage (a Celery/kombu race on connection loss), and runs must not wait for a person to
notice. Real child processes, started and ended by the supervisor."""

from __future__ import annotations

import subprocess
import sys

from core.supervise import Child, Supervisor


def _exits(code: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", f"import sys; sys.exit({code})"])


def _sleeps() -> subprocess.Popen[bytes]:
    """A child that runs until it is stopped (it waits on a stdin nobody writes to)."""
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )


def _until_exited(child: Child) -> None:
    assert child.process is not None
    child.process.wait(timeout=30)


def test_a_worker_that_exits_is_started_again_and_the_server_keeps_running() -> None:
    said: list[str] = []
    starts: list[int] = []

    def worker() -> subprocess.Popen[bytes]:
        starts.append(1)
        return _exits(1) if len(starts) == 1 else _sleeps()

    server = Child("daphne", _sleeps, restart=False)
    crashing = Child("celery worker", worker, restart=True)
    supervisor = Supervisor([server, crashing], say=said.append)
    supervisor.start()
    try:
        _until_exited(crashing)
        assert supervisor.check()
        assert len(starts) == 2
        assert crashing.process is not None
        assert crashing.process.poll() is None  # the new worker runs
        assert said == ["celery worker exited with code 1; restarting it."]
    finally:
        for process in supervisor.processes():
            process.kill()
            process.wait()


def test_a_worker_that_keeps_exiting_is_given_up() -> None:
    said: list[str] = []
    now = [0.0]
    crashing = Child("celery worker", lambda: _exits(2), restart=True)
    supervisor = Supervisor([crashing], say=said.append, max_restarts=2, clock=lambda: now[0])
    supervisor.start()
    outcomes = []
    for _ in range(3):
        _until_exited(crashing)
        outcomes.append(supervisor.check())
        now[0] += 1
    assert outcomes == [True, True, False]
    assert said[-1] == "celery worker exited with code 2 2 times within 60 s; stopping."


def test_restarts_long_ago_do_not_count() -> None:
    now = [0.0]
    crashing = Child("celery beat", lambda: _exits(1), restart=True)
    supervisor = Supervisor(
        [crashing], say=lambda _: None, max_restarts=1, window_seconds=60, clock=lambda: now[0]
    )
    supervisor.start()
    _until_exited(crashing)
    assert supervisor.check()
    now[0] += 61  # a minute later, the earlier restart is forgotten
    _until_exited(crashing)
    assert supervisor.check()


def test_the_server_exiting_stops_everything() -> None:
    said: list[str] = []
    server = Child("daphne", lambda: _exits(3), restart=False)
    supervisor = Supervisor([server], say=said.append)
    supervisor.start()
    _until_exited(server)
    assert supervisor.check() is False
    assert said == ["daphne exited with code 3; stopping."]
