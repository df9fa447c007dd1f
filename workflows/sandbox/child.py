"""The code step's child process: the platform never imports this module. The parent
compiles it once and sends it, marshalled, ahead of the job on stdin of `python -I -S -B -c
<loader> <root> <mode>` (workflows/sandbox/__init__.py, docs/sandbox.md).

Contract with the parent: one job, marshalled, on stdin (`code`, `inputs`, `cpu_seconds`,
`memory_bytes`, `max_output_bytes`, `binds`, `links`, `masks`; marshal only ever reads what the
parent wrote); one result line as JSON on stdout, the last line written: `{"ok": true,
"result": …}` or `{"ok": false, "kind": …, "message": …, "line": …}`. Standard library only:
nothing of the platform is on its path.

Order matters: confine first (filesystem view, capabilities, seccomp, rlimits), then hide
ctypes, then compile and run the user's code. In mode "ns" it runs as root of fresh user,
mount, network, PID, IPC and UTS namespaces (unshare); in mode "process" there are no
namespaces and the filesystem view is the host's (a degraded mode an operator must choose).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal without its enum import
import ctypes
import io
import marshal
import os
import resource
import sys

# Start-up time is most of a code step's cost: only what runs is imported. No json (it brings
# re and enum: 9 ms), no signal (enum), no typing or importlib.abc (pathlib, ipaddress): the
# type checker alone needs those.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any, NoReturn

CODE_FILENAME = "<code step>"
BLOCKED_MODULES = frozenset({"ctypes", "_ctypes"})

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2
# statvfs f_flag bit -> mount flag: a bind's read-only remount must keep the flags the
# original mount has (the kernel refuses to clear them from inside a user namespace).
STATVFS_TO_MS = {
    1: MS_RDONLY,
    2: MS_NOSUID,
    4: MS_NODEV,
    8: MS_NOEXEC,
    1024: MS_NOATIME,
    2048: MS_NODIRATIME,
    4096: MS_RELATIME,
}

PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
EPERM = 1
ENOSYS = 38
CLONE_THREAD = 0x10000
SYS_CLONE = 56
SYS_CLONE3 = 435
SYS_PIVOT_ROOT = 155
# x86_64 system calls the user's code never needs: processes (fork, vfork, exec), sockets,
# namespaces and mounts, tracing other processes, kernel modules and keyrings, BPF, io_uring.
# fmt: off
DENIED_X86_64 = (
    41, 42, 43, 49, 50, 53, 288,  # socket, connect, accept, bind, listen, socketpair, accept4
    57, 58, 59, 322,  # fork, vfork, execve, execveat
    101, 310, 311,  # ptrace, process_vm_readv, process_vm_writev
    133, 259, 135,  # mknod, mknodat, personality
    155, 161, 165, 166, 272, 308,  # pivot_root, chroot, mount, umount2, unshare, setns
    163, 167, 168, 169, 246, 320,  # acct, swapon, swapoff, reboot, kexec_load, kexec_file_load
    175, 176, 313,  # init_module, delete_module, finit_module
    248, 249, 250,  # add_key, request_key, keyctl
    298, 303, 304, 321, 323,  # perf_event_open, name/open_by_handle_at, bpf, userfaultfd
    425, 426, 427,  # io_uring_setup, io_uring_enter, io_uring_register
    428, 429, 430, 431, 432, 433, 434,  # open_tree, move_mount, fsopen … fspick, pidfd_open
)
# fmt: on


_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)} | {ord('"'): '\\"', ord("\\"): "\\\\"}
_CONSTANTS = {True: "true", False: "false", None: "null"}


def to_json(value: object) -> str:
    """`value` as JSON text, as `json.dumps(value, ensure_ascii=False, allow_nan=False)` writes
    it (compact); TypeError or ValueError for what JSON cannot hold; RecursionError for a
    cycle."""
    if value is None or value is True or value is False:
        return _CONSTANTS[value]
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPES) + '"'
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not allowed in JSON")
        return float.__repr__(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(item) for item in value) + "]"
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if isinstance(key, str):
                name = key
            elif key is None or isinstance(key, bool):
                name = _CONSTANTS[key]
            elif isinstance(key, int | float):
                name = to_json(key)
            else:
                raise TypeError(
                    f"keys must be str, int, float, bool or None, not {type(key).__name__}"
                )
            parts.append(to_json(name) + ":" + to_json(item))
        return "{" + ",".join(parts) + "}"
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def emit(line: str) -> None:
    # A lone surrogate can only be inside a string: as a \u escape it is still valid JSON.
    data = (line + "\n").encode("utf-8", "backslashreplace")
    while data:
        data = data[os.write(1, data) :]


def fail(kind: str, message: str, line: int | None = None) -> NoReturn:
    emit(to_json({"ok": False, "kind": kind, "message": message, "line": line}))
    os._exit(0)


# --- confinement -----------------------------------------------------------------------------

libc: Any = None  # glibc through ctypes, during the set-up only


def _check(rc: int, what: str) -> None:
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    def enc(value: str | None) -> bytes | None:
        return None if value is None else value.encode()

    _check(
        libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


def _readonly_bind(source: str, target: str) -> None:
    os.makedirs(target, exist_ok=True)
    _mount(source, target, None, MS_BIND | MS_REC, None)
    kept = 0
    have = os.statvfs(source).f_flag
    for bit, flag in STATVFS_TO_MS.items():
        if have & bit:
            kept |= flag
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | kept
    _mount(None, target, None, flags, None)


def confine_filesystem(root: str, job: dict[str, Any]) -> None:
    """Replace the whole filesystem with a read-only tmpfs holding read-only binds of the
    interpreter and system libraries only; site-packages and the platform are masked or absent."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    for path in job["binds"]:
        _readonly_bind(path, root + path)
    for name, target in job["links"].items():
        os.symlink(target, root + name)
    for path in job["masks"]:
        if os.path.isdir(root + path):
            _mount("tmpfs", root + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
    _mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    os.chdir(root)
    _check(libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "umount the old root")
    os.chdir("/")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_privileges() -> None:
    """No capabilities (not even inside the user namespace), none regainable by exec."""
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(libc.capset(ctypes.byref(header), ctypes.byref(data)), "capset")


class _Filter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


def install_seccomp() -> None:
    """Deny DENIED_X86_64 with EPERM, clone without CLONE_THREAD (a new process) with EPERM and
    clone3 with ENOSYS (glibc then uses clone); kill on another ABI. Only on x86_64 (the
    numbers are its own); elsewhere this layer is missing (docs/sandbox.md)."""
    if os.uname().machine != "x86_64":
        return
    load, jeq, jset, jge, ret = 0x20, 0x15, 0x45, 0x35, 0x06
    deny = SECCOMP_RET_ERRNO | EPERM
    code = [
        (load, 0, 0, 4),  # seccomp_data.arch
        (jeq, 1, 0, AUDIT_ARCH_X86_64),
        (ret, 0, 0, SECCOMP_RET_KILL_PROCESS),
        (load, 0, 0, 0),  # seccomp_data.nr
        (jge, 0, 1, 0x40000000),  # the x32 ABI
        (ret, 0, 0, SECCOMP_RET_KILL_PROCESS),
        (jeq, 0, 1, SYS_CLONE3),
        (ret, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
    ]
    for number in DENIED_X86_64:
        code += [(jeq, 0, 1, number), (ret, 0, 0, deny)]
    code += [
        (jeq, 0, 3, SYS_CLONE),
        (load, 0, 0, 16),  # args[0], low word: the clone flags
        (jset, 1, 0, CLONE_THREAD),
        (ret, 0, 0, deny),
        (ret, 0, 0, SECCOMP_RET_ALLOW),
    ]
    filters = (_Filter * len(code))(*[_Filter(*f) for f in code])
    program = _Program(len(code), filters)
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0), "seccomp")


def set_limits(job: dict[str, Any]) -> None:
    cpu = max(1, int(job["cpu_seconds"] + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_AS, (job["memory_bytes"], job["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
    resource.setrlimit(resource.RLIMIT_NPROC, (16, 16))


class _NoCtypes:
    """Refuses ctypes: it would give the code raw memory and system calls (the kernel layers
    still hold without this; it makes the refusal say so)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname.split(".")[0] in BLOCKED_MODULES:
            raise ImportError(f"{fullname} is not available in a code step", name=fullname)
        return None


class _Counted(io.TextIOBase):
    """print() in the code: counted against the output limit, then discarded."""

    def __init__(self, budget: list[int]) -> None:
        self.budget = budget

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.budget[0] -= len(text.encode("utf-8", "replace"))
        if self.budget[0] < 0:
            fail("output", "printed more than the output limit allows")
        return len(text)


def _user_line(exc: BaseException) -> int | None:
    if isinstance(exc, SyntaxError) and exc.filename == CODE_FILENAME:
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == CODE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def run_user_code(job: dict[str, Any], budget: list[int]) -> None:
    try:
        compiled = compile(job["code"], CODE_FILENAME, "exec")
    except SyntaxError as exc:
        fail("syntax", f"SyntaxError: {exc.msg}", exc.lineno)
    namespace: dict[str, Any] = {"__name__": "__code_step__"}
    try:
        exec(compiled, namespace)  # noqa: S102 - the point of the sandbox
        main = namespace.get("main")
        if not callable(main):
            fail("contract", "the code defines no function main(inputs)")
        result = main(job["inputs"])
    except MemoryError:
        fail("memory", "ran out of memory")
    except BaseException as exc:  # SystemExit too: reported, never a quiet exit
        fail("error", f"{type(exc).__name__}: {exc}", _user_line(exc))
    try:
        encoded = '{"ok":true,"result":' + to_json(result) + "}"
    except (TypeError, ValueError) as exc:
        fail("not_json", f"main() returned a value that is not JSON: {exc}")
    except RecursionError:
        fail(
            "not_json",
            "main() returned a value that is not JSON: it contains itself (or nests too deep)",
        )
    except MemoryError:
        fail("memory", "ran out of memory")
    if len(encoded.encode("utf-8", "backslashreplace")) > budget[0]:
        fail("output", "returned more than the output limit allows")
    emit(encoded)


def main() -> None:
    global libc
    root, mode = sys.argv[1], sys.argv[2]
    libc = ctypes.CDLL(None, use_errno=True)
    job = marshal.loads(sys.stdin.buffer.read())  # noqa: S302 - written by the parent
    os.close(0)
    try:
        if mode == "ns":
            confine_filesystem(root, job)
        else:
            os.chdir(root)
        drop_privileges()
        install_seccomp()
    except OSError as exc:
        fail("setup", str(exc))
    set_limits(job)
    # What reaches libc stays with the set-up: the user's code can import __main__.
    libc = None
    for name in ("ctypes", "_CapHeader", "_CapData", "_Filter", "_Program"):
        globals().pop(name)

    def on_cpu_limit(signum: int, frame: object) -> None:
        fail("cpu", "CPU time limit")

    # Pid 1 of a PID namespace ignores signals it has no handler for: SIGXCPU needs one (the
    # hard limit's SIGKILL, a second later, is delivered regardless).
    _signal.signal(_signal.SIGXCPU, on_cpu_limit)
    for name in BLOCKED_MODULES:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, _NoCtypes())
    budget = [int(job["max_output_bytes"])]
    sys.stdout = sys.stderr = _Counted(budget)
    run_user_code(job, budget)


if __name__ == "__main__":
    main()
