"""Run untrusted Python (model-written code plus its tests) in its own isolated process tree, then leave no trace.

Each program gets a fresh interpreter (`python -I -S -B`: isolated mode, no site-packages, no .pyc writes) started by
`sandbox_runner.py`, which takes in order:
  * a new network namespace (no interface but a downed loopback: no socket reaches anything) and a mount namespace
    in which every mount is read-only, with private tmpfs over /tmp, /var/tmp and /dev/shm (the working directory
    lives there and vanishes with it) and an empty, unreadable tmpfs over the home folders. Root has these directly;
    an ordinary user (a SLURM job) gets them inside a new user namespace, plus a PID namespace whose init runs the
    program, so every process it starts dies with it;
  * rlimits (CPU seconds, address space, file size, open files, no core dumps, and the process count, set before
    the privilege drop so a fork bomb is capped before its first fork);
  * as root, a drop to a dedicated, unused uid (one per worker process, so the process cap binds root too and no other
    sandbox shares it); as a user, the drop of every capability the user namespace gave; then no supplementary groups,
    no_new_privs, and death with its parent.
A pass is `pass <nonce>` on the result channel, written after the program ran to its end: an exit code (os._exit(0),
sys.exit(0)) never passes. Afterwards every process of the dedicated uid is killed (kill(-1) issued as that uid, so
double-forked daemons and escaped sessions go too) and reaped, or, without root, the PID namespace's init is waited
for (its end takes the namespace with it); the parent's temporary folder is removed.
Where the kernel refuses the namespaces, no program runs (`confinement_refused` says why, in one line) unless
`SandboxLimits.allow_unconfined` opts in to the old fallback: permissions and process groups only, with warnings.

Left out: in-process forgery. The program shares its interpreter with the runner, so code written to attack this
harness (reading the runner's frames, overriding `==` on its return values) can fake a pass; that is reward hacking to
catch in review, not a risk to the machine. Also left out: seccomp filters (the program may make any system call the
namespaces and rlimits leave it)."""

from __future__ import annotations

import functools
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
from typing import Any, Optional

RUNNER = Path(__file__).with_name("sandbox_runner.py")
# A dedicated uid is this base plus the pid of the process that starts sandboxes: pids stay below 2**22, so uids stay
# below 2**31 and two live workers never share one. No passwd entry, no file on the machine belongs to these uids.
DEDICATED_UID_BASE = 2_000_000_000
TMPFS_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm")
STARTUP_GRACE_S = 1.0  # interpreter start and isolation set-up, on top of the program's own timeout
MAX_RESULT_BYTES = 1 << 16
PR_SET_CHILD_SUBREAPER = 36
NAMESPACE_END_S = 30.0  # the kernel ends a PID namespace (at most `processes` processes) in milliseconds
# What to enable where the kernel refuses a user its namespaces (one line, shown when HumanEval scoring stops).
ENABLE_NAMESPACES = (
    "enable unprivileged user namespaces (sysctl user.max_user_namespaces=10000; on Debian/Ubuntu kernels also "
    "kernel.unprivileged_userns_clone=1, on Ubuntu 24.04+ kernel.apparmor_restrict_unprivileged_userns=0), run as "
    "root, or set benchmark.allow_unconfined=true to score without this isolation"
)

_subreaper = False


@dataclass(frozen=True)
class SandboxLimits:
    """timeout_s: wall clock per program. memory_mb: address space per process. processes: process count.
    file_mb: largest file it may write. disk_mb: size of each private tmpfs. user: "auto" (a dedicated unused uid) or
    the name of an unprivileged user (its other processes then share the process cap). allow_unconfined: where the
    kernel refuses namespaces, run programs anyway (permissions and process groups only) instead of failing them."""

    timeout_s: float = 5.0
    memory_mb: int = 1024
    processes: int = 8
    file_mb: int = 16
    disk_mb: int = 64
    user: str = "auto"
    allow_unconfined: bool = False

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


def _namespace_init_alive(pid: int) -> bool:
    """Whether `pid` is still a live init of a nested PID namespace (its NSpid line ends in 1), not a zombie."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return False
    nspids = fields.get("NSpid", "").split()
    return len(nspids) >= 2 and nspids[-1] == "1" and fields.get("State", "").split()[:1] not in (["Z"], ["X"])


def _namespace_init(data: bytes) -> Optional[int]:
    """The runner's `ns <pid>` line: the first one, written right after the fork, long before the program runs."""
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith("ns ") and line[3:].isdigit():
            return int(line[3:])
    return None


def _cleanup(process: subprocess.Popen, uid: int, gid: int, dedicated: bool, init: Optional[int]) -> bool:
    """Kill the program's whole tree; True when nothing of it is left."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    if init is not None:
        # The init dies with the runner (same group, or its parent-death signal) and takes the namespace along;
        # its exit completes only after every other process in it is gone.
        try:
            if _namespace_init_alive(init):  # never any other process, should a program forge the line
                os.kill(init, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + NAMESPACE_END_S
        while _namespace_init_alive(init):
            if time.monotonic() > deadline:
                return False
            _reap()
            time.sleep(0.001)
        _reap()
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


def _runner_env() -> dict[str, str]:
    """The runner's environment: nothing of the caller's but what an interpreter may need to start (a Python built
    with its libpython outside the loader's paths, as module systems on clusters install it). The runner clears it
    before the program runs."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    if os.environ.get("LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return env


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
            "allow_unconfined": limits.allow_unconfined,
        }
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(RUNNER)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd="/", env=_runner_env(), start_new_session=True, close_fds=True,
        )
        try:
            try:
                process.stdin.write(json.dumps(header).encode() + b"\n" + program.encode("utf-8", "replace"))
                process.stdin.close()
            except BrokenPipeError:
                pass
            data, timed_out = _read_results(process, start + limits.timeout_s + STARTUP_GRACE_S)
        finally:
            clean = _cleanup(process, uid, gid, dedicated, _namespace_init(data))
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
    if dedicated:
        isolation["cleanup"] = "kill every process of the uid"
    elif isolation.get("pid_namespace"):
        isolation["cleanup"] = "PID namespace (every process ends with its init)"
    else:
        isolation["cleanup"] = "process group"
    if not clean:
        isolation.setdefault("warnings", []).append(f"processes of the sandbox (uid {uid}) survived cleanup")
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


@functools.lru_cache(maxsize=None)
def _confinement_refused(euid: int) -> Optional[str]:
    result = run_program("pass\n", SandboxLimits(timeout_s=10.0))
    if result.passed:
        return None
    marker = "namespaces refused: "
    if marker in result.detail:
        return result.detail.split(marker, 1)[1]
    return None  # the namespaces held and something else failed: the probe of the caller reports that


def confinement_refused() -> Optional[str]:
    """None where sandboxes get their namespaces here; otherwise why not, in a few words (probed once per uid by
    starting a trivial program)."""
    return _confinement_refused(os.geteuid())
