"""Run untrusted Python (model-written code plus its tests) in its own isolated process tree, then leave no trace.

Each program gets a fresh interpreter (`python -I -S -B`: isolated mode, no site-packages, no .pyc writes) started by
`sandbox_runner.py`, which, when it starts as root (the usual trainer setup), takes in order:
  * a new network namespace (no interface but a downed loopback: no socket reaches anything) and a mount namespace
    with private tmpfs over /tmp, /var/tmp and /dev/shm (the working directory lives there and vanishes with it) and an
    empty, unreadable tmpfs over the home folders;
  * rlimits (CPU seconds, address space, file size, open files, no core dumps, and the process count, set before
    the privilege drop so a fork bomb is capped before its first fork);
  * a drop to a dedicated, unused uid (one per worker process, so the process cap binds root too and no other
    sandbox shares it), no supplementary groups, no_new_privs, and death with its parent.
A pass is `pass <nonce>` on the result channel, written after the program ran to its end: an exit code (os._exit(0),
sys.exit(0)) never passes. Afterwards every process of the dedicated uid is killed (kill(-1) issued as that uid, so
double-forked daemons and escaped sessions go too) and reaped, and the parent's temporary folder is removed.
Without root the sandbox degrades, with warnings in the isolation report: a user namespace for the network where the
kernel allows it, no privilege drop, cleanup by process group only.

Left out: in-process forgery. The program shares its interpreter with the runner, so code written to attack this
harness (reading the runner's frames, overriding `==` on its return values) can fake a pass; that is reward hacking to
catch in review, not a risk to the machine.
"""

from __future__ import annotations

import json
import math
import os
import pwd
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNNER = Path(__file__).with_name("sandbox_runner.py")
# A dedicated uid is this base plus the pid of the process that starts sandboxes: pids stay below 2**22, so uids stay
# below 2**31 and two live workers never share one. No passwd entry, no file on the machine belongs to these uids.
DEDICATED_UID_BASE = 2_000_000_000
TMPFS_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm")
STARTUP_GRACE_S = 1.0  # interpreter start and isolation set-up, on top of the program's own timeout
MAX_RESULT_BYTES = 1 << 16
PR_SET_CHILD_SUBREAPER = 36

_subreaper = False


@dataclass(frozen=True)
class SandboxLimits:
    """timeout_s: wall clock per program. memory_mb: address space per process. processes: process count.
    file_mb: largest file it may write. disk_mb: size of each private tmpfs. user: "auto" (a dedicated unused uid) or
    the name of an unprivileged user (its other processes then share the process cap)."""

    timeout_s: float = 5.0
    memory_mb: int = 1024
    processes: int = 8
    file_mb: int = 16
    disk_mb: int = 64
    user: str = "auto"

    def __post_init__(self) -> None:
        for key in ("timeout_s", "memory_mb", "processes", "file_mb", "disk_mb"):
            if not getattr(self, key) > 0:
                raise ValueError(f"sandbox {key}={getattr(self, key)} must be > 0")
        if self.processes < 2:
            raise ValueError(f"sandbox processes={self.processes} must be >= 2 (the runner counts as one)")


@dataclass
class RunResult:
    passed: bool
    status: str  # pass | fail | timeout | error
    detail: str
    seconds: float
    isolation: dict[str, Any] = field(default_factory=dict)


def become_subreaper() -> None:
    """Make this process adopt orphans of its sandboxes, so they are reaped here (pool worker initializer)."""
    global _subreaper
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    _subreaper = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _identity(user: str) -> tuple[int, int, bool]:
    """(uid, gid, dedicated) the program runs as, for a root caller."""
    if user == "auto":
        uid = DEDICATED_UID_BASE + os.getpid()
        return uid, uid, True
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"sandbox user={user!r} does not exist; use 'auto' or an unprivileged user name") from None
    if entry.pw_uid == 0:
        raise ValueError(f"sandbox user={user!r} is root; use 'auto' or an unprivileged user name")
    return entry.pw_uid, entry.pw_gid, False


def _pids_of(uid: int) -> list[int]:
    """Live (non-zombie) processes running as `uid` (the owner of /proc/<pid> is the process's effective uid; no
    sandbox process can change its uids: no_new_privs, no capabilities)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]  # the command name may hold spaces or ")"
        except (OSError, IndexError):
            continue
        if state != "Z":
            pids.append(int(entry.name))
    return pids


def _kill_uid(uid: int, gid: int) -> None:
    """kill(-1, SIGKILL) issued as `uid`: the kernel signals every process of that uid in one pass, so even a fork
    bomb cannot spawn past it. Forked helper, because only a process running as the uid can issue it."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _reap() -> None:
    if not _subreaper:
        return
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _cleanup(process: subprocess.Popen, uid: int, gid: int, dedicated: bool) -> bool:
    """Kill the program's whole tree; True when nothing of it is left."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    if not dedicated:
        return True
    for attempt in range(200):
        _reap()
        if not _pids_of(uid):
            return True
        _kill_uid(uid, gid)
        time.sleep(0.001 * min(attempt, 20))
    return False


def _coverable(folder: str) -> bool:
    """A real folder other than / (the runner re-exposes the standard library if it lives inside)."""
    path = Path(folder)
    return path.is_dir() and not path.is_symlink() and path.resolve() != Path("/")


def _home_folders() -> list[str]:
    homes = {str(Path.home()), os.environ.get("HOME", ""), "/root"}
    return sorted(h for h in homes if h and _coverable(h) and not h.startswith(TMPFS_FOLDERS))


def _read_results(process: subprocess.Popen, deadline: float) -> tuple[bytes, bool]:
    """Result-channel bytes until the runner exits or the deadline passes (then timed_out is True)."""
    fd = process.stdout.fileno()
    os.set_blocking(fd, False)
    data = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bytes(data), True
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.02))
        exited = process.poll() is not None
        if ready or exited:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                chunk = None
            if chunk:
                data += chunk[: MAX_RESULT_BYTES - len(data)]
            elif chunk == b"" or exited:  # EOF, or the runner is gone (its children may still hold the pipe)
                return bytes(data), False


def run_program(program: str, limits: SandboxLimits = SandboxLimits()) -> RunResult:
    """Run `program` in the sandbox; passed only when it ran to its end. Never raises for anything the program does."""
    start = time.monotonic()
    root = os.geteuid() == 0
    uid, gid, dedicated = _identity(limits.user) if root else (os.getuid(), os.getgid(), False)
    workdir = tempfile.mkdtemp(prefix="passk-sandbox-")
    nonce = secrets.token_hex(16)
    try:
        if root:
            os.chown(workdir, uid, gid)
        already = 0 if dedicated else len(_pids_of(uid))  # a shared uid's other processes count against the cap
        header = {
            "nonce": nonce, "uid": uid, "gid": gid, "workdir": workdir,
            "cpu_s": math.ceil(limits.timeout_s) + 1, "memory_mb": limits.memory_mb, "file_mb": limits.file_mb,
            "disk_mb": limits.disk_mb, "nproc": limits.processes + already,
            "tmpfs": [f for f in TMPFS_FOLDERS if _coverable(f)], "hide": _home_folders(),
        }
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(RUNNER)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, start_new_session=True, close_fds=True,
        )
        try:
            try:
                process.stdin.write(json.dumps(header).encode() + b"\n" + program.encode("utf-8", "replace"))
                process.stdin.close()
            except BrokenPipeError:
                pass
            data, timed_out = _read_results(process, start + limits.timeout_s + STARTUP_GRACE_S)
        finally:
            clean = _cleanup(process, uid, gid, dedicated)
            process.stdout.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _verdict(data, timed_out, nonce, process.returncode, time.monotonic() - start, clean, uid, dedicated)


def _verdict(data: bytes, timed_out: bool, nonce: str, code: int, seconds: float, clean: bool, uid: int,
             dedicated: bool) -> RunResult:
    lines = data.decode("utf-8", "replace").splitlines()
    isolation: dict[str, Any] = {}
    for line in lines:
        if line.startswith("iso "):
            try:
                isolation = json.loads(line[4:])
            except json.JSONDecodeError:
                pass
            break
    isolation["user"] = f"dedicated uid {uid}" if dedicated else f"uid {uid}"
    isolation["cleanup"] = "kill every process of the uid" if dedicated else "process group"
    if not clean:
        isolation.setdefault("warnings", []).append(f"processes of uid {uid} survived cleanup")
    if f"pass {nonce}" in lines:
        return RunResult(True, "pass", "", seconds, isolation)
    if timed_out:
        return RunResult(False, "timeout", "wall-clock timeout", seconds, isolation)
    errors = [line for line in lines if line.startswith(("error ", "fail "))]
    if errors:
        detail = errors[0]
    elif code is not None and code < 0:
        detail = f"killed by {signal.Signals(-code).name} before the end of the program"
    else:
        detail = f"exited with code {code} before the end of the program"
    return RunResult(False, "error" if detail.startswith("error ") else "fail", detail, seconds, isolation)
