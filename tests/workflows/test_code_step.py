"""The code step: real user code through the real sandbox (workflows/sandbox, docs/sandbox.md).
Every escape attempt fails safely with a message naming what stopped it; ordinary code using
each standard module the issue names works; a flow runs a code step like any other step."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from workflows import validators
from workflows.nodes import NodeSpec, StepFailed, execute

STEP = "calc"


def run(code: str, inputs: dict[str, Any] | None = None) -> Any:
    node = NodeSpec(STEP, "code", {"code": textwrap.dedent(code), "inputs": inputs or {}})
    return execute(node, {}).output


def fails(code: str, inputs: dict[str, Any] | None = None) -> str:
    with pytest.raises(StepFailed) as caught:
        run(code, inputs)
    message = caught.value.message
    assert message.startswith(f"Code step '{STEP}': "), message
    return message


@pytest.fixture
def small_limits(settings: Any) -> Any:
    settings.WORKFLOW_CODE_CPU_SECONDS = 1
    settings.WORKFLOW_CODE_WALL_SECONDS = 20
    settings.WORKFLOW_CODE_MEMORY_MB = 128
    settings.WORKFLOW_CODE_MAX_OUTPUT_BYTES = 100_000
    return settings


# --- what works ------------------------------------------------------------------------------


def test_main_gets_its_rendered_inputs_and_returns_json() -> None:
    node = NodeSpec(
        STEP,
        "code",
        {
            "code": "def main(inputs):\n    return {'total': sum(inputs['numbers']), 'n': None}\n",
            "inputs": {"numbers": "{{ input.numbers }}"},
        },
    )
    outcome = execute(node, {"input": {"numbers": [1, 2, 3.5]}})
    assert outcome.output == {"total": 6.5, "n": None}
    assert outcome.input == {"numbers": [1, 2, 3.5]}


def test_every_standard_module_the_step_offers_imports_and_works() -> None:
    result = run(
        """
        import base64, collections, datetime, decimal, itertools, json, math, re, statistics

        def main(inputs):
            words = re.findall(r"[a-z]+", inputs["text"].lower())
            start = datetime.date(2026, 1, 30) + datetime.timedelta(days=3)
            return {
                "json": json.loads('{"a": [1, 2]}'),
                "top": collections.Counter(words).most_common(1)[0],
                "sqrt": math.sqrt(16),
                "date": start.isoformat(),
                "money": str(decimal.Decimal("0.10") + decimal.Decimal("0.20")),
                "b64": base64.b64encode(b"hi").decode(),
                "pairs": list(itertools.combinations("abc", 2)),
                "median": statistics.median([3, 1, 2]),
            }
        """,
        {"text": "the cat and the hat"},
    )
    assert result == {
        "json": {"a": [1, 2]},
        "top": ["the", 2],
        "sqrt": 4.0,
        "date": "2026-02-02",
        "money": "0.30",
        "b64": "aGk=",
        "pairs": [["a", "b"], ["a", "c"], ["b", "c"]],
        "median": 2,
    }


def test_other_standard_modules_and_threads_work_too() -> None:
    result = run(
        """
        import hashlib, string, textwrap, threading, zoneinfo, datetime

        def main(inputs):
            box = []
            worker = threading.Thread(target=lambda: box.append(hashlib.sha256(b"x").hexdigest()))
            worker.start()
            worker.join()
            berlin = datetime.datetime(2026, 7, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))
            return [box[0][:8], string.ascii_lowercase[:3], berlin.utcoffset().seconds]
        """
    )
    assert result == ["2d711642", "abc", 7200]


# --- what fails, and how it says so ------------------------------------------------------------


def test_an_exception_names_its_type_message_and_the_users_line() -> None:
    message = fails(
        """
        def main(inputs):
            rows = inputs["rows"]
            raise ValueError(f"row {len(rows)} has no total")
        """,
        {"rows": [1, 2]},
    )
    assert message == "Code step 'calc': ValueError: row 2 has no total (line 4)"
    assert "Traceback" not in message
    assert "sandbox" not in message


def test_an_error_deep_in_the_users_helpers_names_the_innermost_user_line() -> None:
    message = fails(
        """
        def total(rows):
            return sum(r["amount"] for r in rows)

        def main(inputs):
            return total([{"amount": 1}, {}])
        """
    )
    assert message == "Code step 'calc': KeyError: 'amount' (line 3)"


def test_what_main_returns_arrives_as_the_same_json_value() -> None:
    result = run(
        """
        def main(inputs):
            return {
                "text": 'quote " backslash \\\\ tab \\t newline \\n bell \\x07 é 🙂',
                "lone": "\\ud800",
                "numbers": [0, -3, 2 ** 70, 1.5, 1e-7, True, False, None],
                "pair": (1, "a"),
                1: "int key",
                "nested": {"a": [{"b": []}, {}]},
            }
        """
    )
    assert result == {
        "text": 'quote " backslash \\ tab \t newline \n bell \x07 é 🙂',
        "lone": "\ud800",
        "numbers": [0, -3, 2**70, 1.5, 1e-7, True, False, None],
        "pair": [1, "a"],
        "1": "int key",
        "nested": {"a": [{"b": []}, {}]},
    }
    assert "not JSON" in fails("def main(inputs):\n    return float('nan')\n")
    assert "not JSON" in fails("def main(inputs):\n    x = []\n    x.append(x)\n    return x\n")
    assert "not JSON" in fails("def main(inputs):\n    return {(1, 2): 3}\n")


def test_syntax_errors_missing_main_and_non_json_results_are_named() -> None:
    assert "SyntaxError" in fails("def main(inputs)\n    return 1\n")
    assert "(line 1)" in fails("def main(inputs)\n    return 1\n")
    assert "defines no function main(inputs)" in fails("x = 1\n")
    message = fails("import decimal\ndef main(inputs):\n    return decimal.Decimal('1.5')\n")
    assert "not JSON" in message
    assert "Decimal" in message
    assert "SystemExit" in fails("import sys\ndef main(inputs):\n    sys.exit(3)\n")


# --- escapes -------------------------------------------------------------------------------------


def test_no_network_even_to_a_loopback_port_the_platform_listens_on() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        message = fails(
            """
            import socket

            def main(inputs):
                connection = socket.create_connection(("127.0.0.1", inputs["port"]), timeout=2)
                return "connected"
            """,
            {"port": port},
        )
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    assert "PermissionError" in message
    assert "(line 5)" in message
    assert "PermissionError" in fails(
        """
        import socket
        def main(inputs):
            return socket.socket(socket.AF_UNIX).connect("/run/postgresql/.s.PGSQL.5432")
        """
    )


def test_the_platforms_files_and_the_system_configuration_are_not_there() -> None:
    project = Path(settings.BASE_DIR)
    paths = [
        "/etc/passwd",
        str(project / "config" / "settings" / "base.py"),
        str(project / ".env"),
        str(project / "manage.py"),
    ]
    for path in paths:
        message = fails(
            "def main(inputs):\n    return open(inputs['path']).read()\n", {"path": path}
        )
        assert "FileNotFoundError" in message, (path, message)
    assert "FileNotFoundError" in fails(
        "import os\ndef main(inputs):\n    return os.listdir(inputs['path'])\n",
        {"path": str(project)},
    )
    top = run("import os\ndef main(inputs):\n    return sorted(os.listdir('/'))\n")
    assert "etc" not in top
    assert project.parts[1] not in top  # /work, /app, …: where the platform lives
    assert "proc" not in top


def test_the_environment_is_empty_so_no_secret_reaches_the_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODE_STEP_TEST_SECRET", "sk-live-do-not-leak")
    assert os.environ["CODE_STEP_TEST_SECRET"] == "sk-live-do-not-leak"
    seen = run("import os\ndef main(inputs):\n    return dict(os.environ)\n")
    assert "CODE_STEP_TEST_SECRET" not in seen
    assert "sk-live-do-not-leak" not in str(seen)
    assert "DATABASE_URL" not in seen
    assert "SECRET_KEY" not in seen


def test_the_platform_django_and_the_orm_cannot_be_imported() -> None:
    for statement in (
        "import django",
        "from django.db import connection",
        "from workflows import models",
        "import config.settings.base",
    ):
        message = fails(f"def main(inputs):\n    {statement}\n")
        assert "ModuleNotFoundError" in message, (statement, message)
    # Not even by putting the platform's virtualenv on the path: it is not in the view.
    venv = [p for p in sys.path if p.endswith("site-packages")]
    message = fails(
        "import sys\ndef main(inputs):\n    sys.path[:0] = inputs['paths']\n    import django\n",
        {"paths": venv},
    )
    assert "ModuleNotFoundError" in message


def test_processes_cannot_be_started_so_a_fork_bomb_stops_at_once() -> None:
    message = fails(
        """
        import os

        def main(inputs):
            while True:
                os.fork()
        """
    )
    assert "PermissionError" in message
    assert "(line 6)" in message
    message = fails(
        """
        import subprocess

        def main(inputs):
            return subprocess.run(["/bin/sh", "-c", "cat /etc/passwd"]).returncode
        """
    )
    assert "PermissionError" in message
    assert "PermissionError" in fails(
        "import os\ndef main(inputs):\n    os.execv('/usr/bin/env', ['env'])\n"
    )


def test_ctypes_is_refused() -> None:
    message = fails("def main(inputs):\n    import ctypes\n    return ctypes.CDLL(None).getpid()\n")
    assert "ImportError: ctypes is not available in a code step (line 2)" in message
    # The sandbox's own set-up used it; what it kept is not reachable from __main__.
    reachable = run(
        "import __main__\n"
        "def main(inputs):\n"
        "    return [getattr(__main__, 'libc', None) is not None, hasattr(__main__, 'ctypes')]\n"
    )
    assert reachable == [False, False]


def test_files_cannot_be_written_anywhere() -> None:
    for path in ("/out.txt", "/usr/evil", "out.txt"):
        message = fails(
            "def main(inputs):\n    open(inputs['path'], 'w').write('data')\n", {"path": path}
        )
        assert "Read-only file system" in message or "FileNotFoundError" in message, message


def test_a_huge_allocation_fails_naming_the_memory_limit(small_limits: Any) -> None:
    message = fails("def main(inputs):\n    return len(bytearray(8 * 1024 ** 3))\n")
    assert message == (
        "Code step 'calc': ran out of memory at 128 MB (limit WORKFLOW_CODE_MEMORY_MB)"
    )


def test_an_infinite_loop_stops_at_the_cpu_limit(small_limits: Any) -> None:
    message = fails("def main(inputs):\n    while True:\n        pass\n")
    assert message == (
        "Code step 'calc': stopped after 1 s of CPU time (limit WORKFLOW_CODE_CPU_SECONDS)"
    )


def test_ignoring_the_cpu_signal_does_not_help(small_limits: Any) -> None:
    message = fails(
        """
        import signal

        def main(inputs):
            signal.signal(signal.SIGXCPU, signal.SIG_IGN)
            while True:
                pass
        """
    )
    assert "limit WORKFLOW_CODE_CPU_SECONDS" in message


def test_waiting_forever_and_a_busy_loop_stop_at_the_wall_time_limit(
    small_limits: Any,
) -> None:
    small_limits.WORKFLOW_CODE_WALL_SECONDS = 1
    small_limits.WORKFLOW_CODE_CPU_SECONDS = 30
    expected = "Code step 'calc': stopped after 1 s of wall time (limit WORKFLOW_CODE_WALL_SECONDS)"
    assert fails("import threading\ndef main(inputs):\n    threading.Event().wait()\n") == expected
    assert fails("def main(inputs):\n    while True:\n        pass\n") == expected


def test_printing_or_returning_too_much_fails_naming_the_output_limit(small_limits: Any) -> None:
    expected = (
        "Code step 'calc': its output passed 100000 bytes "
        "(limit WORKFLOW_CODE_MAX_OUTPUT_BYTES; print() counts too)"
    )
    # 100 MB printed, a line at a time.
    assert fails(
        "def main(inputs):\n    for _ in range(100_000):\n        print('x' * 1000)\n"
    ) == (expected)
    assert fails("def main(inputs):\n    return 'x' * 1_000_000\n") == expected
    assert (
        fails("import os\ndef main(inputs):\n    os.write(1, b'x' * 5_000_000)\n    return 1\n")
        == expected
    )


# --- saving ------------------------------------------------------------------------------------


def _definition(code: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "steps": [{"id": "calc", "type": "code", "config": {"code": code, "inputs": {}}}],
        "edges": [],
    }


def test_validation_names_the_step_field_and_line_of_a_syntax_error() -> None:
    issues = [
        str(i) for i in validators.check_schema(_definition("def main(inputs):\n    return (\n"))
    ]
    assert len(issues) == 1
    assert issues[0].startswith("steps[0] (calc).config.code: line 2: ")
    issues = [
        str(i) for i in validators.check_schema(_definition("def helper(x):\n    return x\n"))
    ]
    assert issues == [
        "steps[0] (calc).config.code: defines no function main(inputs) at the top level "
        "(def main(inputs): …)"
    ]
    issues = [str(i) for i in validators.check_schema(_definition("def main():\n    return 1\n"))]
    assert issues == ["steps[0] (calc).config.code: line 1: main() must take one argument, inputs"]
    assert validators.check_schema(_definition("def main(inputs):\n    return 1\n")) == []


# --- isolation modes -----------------------------------------------------------------------------


def test_the_process_mode_still_confines_and_says_so_on_every_run(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.WORKFLOW_CODE_ISOLATION = "process"
    assert run("import math\ndef main(inputs):\n    return math.floor(2.5)\n") == 2
    assert "WORKFLOW_CODE_ISOLATION=process" in caplog.text
    message = fails("import socket\ndef main(inputs):\n    return socket.socket()\n")
    assert "PermissionError" in message
    assert "PermissionError" in fails("import os\ndef main(inputs):\n    os.fork()\n")
    assert run("import os\ndef main(inputs):\n    return dict(os.environ)\n") == {
        "LC_CTYPE": "C.UTF-8"
    }


def test_an_unknown_isolation_mode_fails_closed_naming_the_setting(settings: Any) -> None:
    settings.WORKFLOW_CODE_ISOLATION = "none"
    assert fails("def main(inputs):\n    return 1\n") == (
        "Code step 'calc': WORKFLOW_CODE_ISOLATION is 'none'; use one of namespaces, process"
    )
