"""Run a code step's Python function in a sandboxed child process (docs/sandbox.md).

    result = run_code(code, inputs, limits=CodeLimits.from_settings())   # JSON value
    # raises CodeFailed(message) naming the limit, or the user's exception and line

Invariant: the user's code never runs in a platform process. The child is a fresh interpreter
(`python -I -S -B`, empty environment, no inherited descriptors, its own session) started by
`unshare` in new user, mount, network, PID, IPC and UTS namespaces; it sees a read-only
filesystem of the interpreter and system libraries only, has no capabilities, a seccomp filter,
and CPU, memory, file-size and descriptor rlimits (workflows/sandbox/child.py). The parent
enforces wall time and output size and kills the whole process group when it gives up.

`WORKFLOW_CODE_ISOLATION`: "namespaces" (default) fails closed when user namespaces are not
available; "process" runs without namespaces (host filesystem view, host network namespace,
seccomp still denies sockets on x86_64) and logs a warning on every run.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import marshal
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

CODE_FILENAME = "<code step>"  # as in child.py: frames of the user's code
ISOLATION_MODES = ("namespaces", "process")
_DIAGNOSTIC_BYTES = 4000


@dataclass(frozen=True)
class CodeLimits:
    cpu_seconds: float
    wall_seconds: float
    memory_mb: int
    max_output_bytes: int

    @classmethod
    def from_settings(cls) -> CodeLimits:
        return cls(
            cpu_seconds=float(settings.WORKFLOW_CODE_CPU_SECONDS),
            wall_seconds=float(settings.WORKFLOW_CODE_WALL_SECONDS),
            memory_mb=int(settings.WORKFLOW_CODE_MEMORY_MB),
            max_output_bytes=int(settings.WORKFLOW_CODE_MAX_OUTPUT_BYTES),
        )


class CodeFailed(Exception):
    """The code did not return JSON: `message` says why (a limit by its setting, or the user's
    exception type, message and line)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def code_problem(code: str) -> str | None:
    """What keeps `code` from being a code step, found by compiling it (never running it): a
    syntax error with its line, or no top-level `main(inputs)`. None when it may run."""
    try:
        compile(code, CODE_FILENAME, "exec", dont_inherit=True)
        tree = ast.parse(code, CODE_FILENAME)
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
        return f"cannot be compiled: {exc}"
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef) and statement.name == "main":
            arguments = statement.args
            if arguments.posonlyargs or arguments.args or arguments.vararg:
                return None
            return f"line {statement.lineno}: main() must take one argument, inputs"
        if isinstance(statement, ast.AsyncFunctionDef) and statement.name == "main":
            return f"line {statement.lineno}: main() must be a plain def, not async"
    return "defines no function main(inputs) at the top level (def main(inputs): …)"


@dataclass(frozen=True)
class _Finished:
    returncode: int
    cpu_seconds: float  # the child's and its descendants' CPU time (wait4)
    stdout: bytes
    stderr: bytes
    timed_out: bool
    over_output: bool


@cache
def _child_program() -> tuple[str, bytes]:
    """(the `-c` loader, child.py compiled and marshalled): compiling it in every child cost
    4 ms; the child's interpreter is this one's base interpreter, so the format matches."""
    source = (Path(__file__).parent / "child.py").read_text()
    code = marshal.dumps(compile(source, "workflows/sandbox/child.py", "exec", dont_inherit=True))
    loader = f"import marshal,sys;exec(marshal.loads(sys.stdin.buffer.read({len(code)})))"
    return loader, code


@cache
def _unshare() -> str:
    path = shutil.which("unshare") or ""
    if not path:
        raise CodeFailed(
            "the sandbox needs util-linux's unshare, which is not installed "
            "(or set WORKFLOW_CODE_ISOLATION=process, docs/sandbox.md)"
        )
    return path


@cache
def _filesystem_view() -> tuple[list[str], dict[str, str], list[str]]:
    """(read-only binds, top-level symlinks, directories masked empty) for the child's root:
    the interpreter's prefix and /usr; site-packages, the virtualenv and the project hidden."""
    prefix = os.path.realpath(sys.base_prefix)
    binds = ["/usr"]
    if not prefix.startswith("/usr/"):
        binds.append(prefix)
    links: dict[str, str] = {}
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        top = f"/{name}"
        if os.path.islink(top):
            links[top] = os.readlink(top)
        elif os.path.isdir(top):
            binds.append(top)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        f"{prefix}/lib/{version}/site-packages",
        f"/usr/lib/{version}/site-packages",
        f"/usr/local/lib/{version}/site-packages",
        f"/usr/local/lib/{version}/dist-packages",
        "/usr/lib/python3/dist-packages",
        os.path.realpath(sys.prefix),
        os.path.realpath(settings.BASE_DIR),
    ]
    masks = [
        path
        for path in dict.fromkeys(candidates)
        if any(path == b or path.startswith(b + "/") for b in binds) and path not in binds
    ]
    return binds, links, masks


def _isolation() -> str:
    mode = str(settings.WORKFLOW_CODE_ISOLATION)
    if mode not in ISOLATION_MODES:
        raise CodeFailed(
            f"WORKFLOW_CODE_ISOLATION is {mode!r}; use one of {', '.join(ISOLATION_MODES)}"
        )
    return mode


def _command(mode: str, root: str) -> list[str]:
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    child = [python, "-I", "-S", "-B", "-c", _child_program()[0], root]
    if mode == "process":
        return [*child, "process"]
    namespaces = ["--user", "--map-root-user", "--mount", "--net", "--ipc", "--uts", "--pid"]
    return [_unshare(), *namespaces, "--fork", "--kill-child", "--", *child, "ns"]


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _exchange(process: subprocess.Popen[bytes], job: bytes, limits: CodeLimits) -> _Finished:
    """Write the job, read stdout (capped at the output limit plus the result's framing) and
    stderr (diagnostics, capped) until both close or the wall time passes."""
    if process.stdin is None or process.stdout is None or process.stderr is None:
        raise ValueError("the sandbox's process needs its three pipes")
    cap = limits.max_output_bytes + 1024
    out, err = bytearray(), bytearray()
    pending = memoryview(job)
    timed_out = over_output = False
    deadline = time.monotonic() + limits.wall_seconds
    with selectors.DefaultSelector() as selector:
        for stream in (process.stdin, process.stdout, process.stderr):
            os.set_blocking(stream.fileno(), False)
        selector.register(process.stdin, selectors.EVENT_WRITE)
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in selector.select(remaining):
                if key.fileobj is process.stdin:
                    try:
                        pending = pending[os.write(process.stdin.fileno(), pending[:65536]) :]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        selector.unregister(process.stdin)
                        process.stdin.close()
                    continue
                fd = key.fd
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                if key.fileobj is process.stdout:
                    out += chunk
                    if len(out) > cap:
                        over_output = True
                        break
                elif len(err) < _DIAGNOSTIC_BYTES:
                    err += chunk
            if over_output:
                break
    if timed_out or over_output:
        _kill(process)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return _Finished(process.returncode, cpu, bytes(out), bytes(err), timed_out, over_output)


def _limit_message(kind: str, limits: CodeLimits) -> str:
    if kind == "cpu":
        return (
            f"stopped after {limits.cpu_seconds:g} s of CPU time (limit WORKFLOW_CODE_CPU_SECONDS)"
        )
    if kind == "wall":
        return (
            f"stopped after {limits.wall_seconds:g} s of wall time "
            "(limit WORKFLOW_CODE_WALL_SECONDS)"
        )
    if kind == "memory":
        return f"ran out of memory at {limits.memory_mb} MB (limit WORKFLOW_CODE_MEMORY_MB)"
    return (
        f"its output passed {limits.max_output_bytes} bytes "
        "(limit WORKFLOW_CODE_MAX_OUTPUT_BYTES; print() counts too)"
    )


def _result(finished: _Finished, limits: CodeLimits) -> Any:
    if finished.timed_out:
        raise CodeFailed(_limit_message("wall", limits))
    if finished.over_output:
        raise CodeFailed(_limit_message("output", limits))
    lines = finished.stdout.rstrip(b"\n").rsplit(b"\n", 1)
    try:
        answer = json.loads(lines[-1]) if finished.stdout else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        answer = None
    if isinstance(answer, dict) and answer.get("ok") is True:
        return answer.get("result")
    if isinstance(answer, dict) and answer.get("ok") is False:
        kind = str(answer.get("kind"))
        if kind in ("cpu", "memory", "output"):
            raise CodeFailed(_limit_message(kind, limits))
        line = answer.get("line")
        where = f" (line {line})" if isinstance(line, int) else ""
        if kind == "setup":
            logger.error("code sandbox setup failed: %s", answer.get("message"))
            raise CodeFailed(f"the sandbox could not start: {answer.get('message')}")
        raise CodeFailed(f"{answer.get('message')}{where}")
    if finished.cpu_seconds >= limits.cpu_seconds:
        # The hard limit's SIGKILL (SIGXCPU ignored); unshare reports it only as exit status 1.
        raise CodeFailed(_limit_message("cpu", limits))
    if b"MemoryError" in finished.stderr or b"Cannot allocate memory" in finished.stderr:
        raise CodeFailed(_limit_message("memory", limits))
    diagnostic = finished.stderr.decode("utf-8", "replace").strip()[-_DIAGNOSTIC_BYTES:]
    if diagnostic.startswith("unshare:") and "sigprocmask" not in diagnostic:
        logger.error("code sandbox could not create its namespaces: %s", diagnostic)
        raise CodeFailed(
            f"the sandbox could not start ({diagnostic.splitlines()[0]}): this host does not "
            "let the worker create user namespaces; docs/sandbox.md says how to allow them"
        )
    logger.error(
        "code sandbox ended without a result: exit %s, stderr %r", finished.returncode, diagnostic
    )
    raise CodeFailed(
        f"the sandboxed process ended without a result (exit status {finished.returncode}"
        + (f": {diagnostic.splitlines()[-1]}" if diagnostic else "")
        + ")"
    )


def run_code(code: str, inputs: dict[str, Any], *, limits: CodeLimits) -> Any:
    """Call `main(inputs)` defined by `code` in the sandbox; its JSON return value.
    Raises CodeFailed. Blocks up to `limits.wall_seconds` (plus process start-up)."""
    mode = _isolation()
    if mode == "process":
        logger.warning(
            "code step running with WORKFLOW_CODE_ISOLATION=process: no namespaces, the "
            "code sees the host's filesystem (docs/sandbox.md)"
        )
    binds, links, masks = _filesystem_view()
    job = marshal.dumps(
        {
            "code": code,
            "inputs": json.loads(json.dumps(inputs, default=str)),  # plain JSON values only
            "cpu_seconds": limits.cpu_seconds,
            "memory_bytes": limits.memory_mb * 1024 * 1024,
            "max_output_bytes": limits.max_output_bytes,
            "binds": binds,
            "links": links,
            "masks": masks,
        }
    )
    with tempfile.TemporaryDirectory(prefix="code-step-") as root:
        process = subprocess.Popen(  # noqa: S603 - a fixed command; the code goes in on stdin
            _command(mode, root),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={},
            cwd=root,
            close_fds=True,
            start_new_session=True,
        )
        try:
            finished = _exchange(process, _child_program()[1] + job, limits)
        finally:  # a step deadline (StepTimedOut) or any error: nothing of it may outlive us
            if process.poll() is None:
                _kill(process)
                process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
    return _result(finished, limits)
