"""The program started inside the sandbox: isolate this process, then run untrusted Python code in it.

Started by `sandbox.py` as `python -I -S -B sandbox_runner.py`, standard library only (isolated mode puts neither this
folder nor site-packages on sys.path). Protocol: stdin holds one JSON header line, then the program; fd 1 is the result
channel and gets `ns <pid>` (without root: the outer pid of the PID namespace's init), `iso <json>` (what isolation
holds), then `pass <nonce>` only once the whole program has run to its end, or `fail <reason>`. The program's own
stdout and stderr go to /dev/null, so nothing it prints can pose as a result, and it never sees the nonce's channel by
name. Order matters: namespaces and mounts come first (root has them directly, a user through a new user namespace);
limits are set before privileges or capabilities drop, so the process cap binds before the program can fork. Without
namespaces the runner stops with `error isolation failed` unless the header allows unconfined runs.
"""

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# What a user without root needs: its own user namespace grants it the others (mounts, PID 1, an empty network).
USER_NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
LINUX_CAPABILITY_VERSION_3 = 0x20080522
# The standard library must stay importable after the privilege drop, also when it lives in a hidden home folder
# (pyenv, uv). Where no mount namespace can re-expose it, these modules are imported before the drop instead.
STDLIB = os.path.dirname(os.__file__)
PRELOAD = (
    "math", "cmath", "re", "string", "collections", "itertools", "functools", "heapq", "bisect", "hashlib", "typing",
    "fractions", "decimal", "statistics", "random", "copy", "operator", "datetime", "json", "numbers", "array",
)

libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _call(fn, *args):
    if fn(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _mount_tmpfs(target, size_mb, mode):
    opts = f"size={size_mb}m,mode={mode}".encode()
    _call(libc.mount, b"tmpfs", target.encode(), b"tmpfs", ctypes.c_ulong(MS_NOSUID | MS_NODEV), opts)


def _within(path, folder):
    return os.path.commonpath([path, folder]) == folder


def _cover(folder, size_mb, mode, keep):
    """A fresh tmpfs over `folder`; any `keep` path inside it is bind-mounted back, read-only, from an fd opened
    before the cover (so the interpreter's standard library survives hiding the home folder it lives in)."""
    inside = {path: fd for path, fd in keep.items() if _within(path, folder)}
    _mount_tmpfs(folder, size_mb, "755" if inside else mode)
    for path, fd in inside.items():
        os.makedirs(path, 0o755, exist_ok=True)
        _call(libc.mount, f"/proc/self/fd/{fd}".encode(), path.encode(), None, ctypes.c_ulong(MS_BIND | MS_REC), None)
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        libc.mount(None, path.encode(), None, ctypes.c_ulong(flags), None)  # best effort: root owns it anyway


def _read_only_mounts():
    """Remount every mount of this (private) namespace read-only, keeping its other flags: nothing outside the tmpfs
    can be changed, world-writable files included. Returns how many mounts were made read-only."""
    keep = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": 8, "noatime": 1024, "nodiratime": 2048,
            "relatime": 1 << 21}
    with open("/proc/self/mountinfo") as handle:
        mounts = [line.split() for line in handle]
    count = 0
    for fields in mounts:
        target = fields[4].encode().decode("unicode_escape").encode("latin-1")  # mountinfo escapes " " as \040
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        for option in fields[5].split(","):
            flags |= keep.get(option, 0)
        if libc.mount(None, target, None, ctypes.c_ulong(flags), None) == 0:
            count += 1
    return count


def _private_filesystem(header, report):
    """In a fresh mount namespace: every mount read-only, private tmpfs over the temp folders, home folders hidden.
    Returns the working folder (on the first tmpfs), or None when there is no temp folder to hold it."""
    # Mount changes must not propagate back to the host's namespace.
    _call(libc.mount, None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None)
    report["read_only_mounts"] = _read_only_mounts()
    keep = {STDLIB: os.open(STDLIB, os.O_PATH | os.O_DIRECTORY)}
    for folder in header["tmpfs"]:
        _cover(folder, header["disk_mb"], "1777", keep)
        report["tmpfs"].append(folder)
    for folder in header["hide"]:
        _cover(folder, 1, "000", keep)
        report["hidden"].append(folder)
    for fd in keep.values():
        os.close(fd)
    work = os.path.join(header["tmpfs"][0], "work") if header["tmpfs"] else None
    if work:
        os.mkdir(work, 0o700)
        if os.geteuid() == 0:
            os.chown(work, header["uid"], header["gid"])
    return work


def _namespaces_as_root(header, report):
    """New network and mount namespaces, then the private filesystem. Root only."""
    try:
        _call(libc.unshare, CLONE_NEWNS | CLONE_NEWNET)
    except OSError as error:
        report["warnings"].append(f"no network/mount namespace ({error.strerror})")
        return None
    report["network"] = "none (new network namespace)"
    return _private_filesystem(header, report)


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _namespaces_as_user(header, report):
    """Without root: a new user namespace (this uid and gid mapped to themselves, nothing else) gives the capabilities
    to build mount, PID and network namespaces in it. Returns the working folder, or None where the kernel refuses.
    The PID namespace takes effect for children: `_pid_one` forks its init next."""
    uid, gid = os.getuid(), os.getgid()
    try:
        _call(libc.unshare, USER_NAMESPACES)
    except OSError as error:
        report["warnings"].append(f"no user namespace as a non-root user ({error.strerror})")
        return None
    _write("/proc/self/setgroups", "deny")  # required before an unprivileged gid_map; groups can then only shrink
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    report["network"] = "none (new user + network namespace)"
    return _private_filesystem(header, report) or header["workdir"]


def _pid_one(result, report):
    """Fork the init of the new PID namespace, which runs the program: when it ends, however it ends, the kernel kills
    every other process of the namespace before its exit completes. This parent only waits and passes the status on."""
    pid = os.fork()
    if pid == 0:
        _call(libc.prctl, PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # at once: the parent may be killed any time
        try:  # a /proc of this namespace: the program sees its own processes only
            _call(libc.mount, b"proc", b"/proc", b"proc", ctypes.c_ulong(MS_NOSUID | MS_NODEV | MS_NOEXEC), None)
            report["proc"] = "private"
        except OSError as error:
            report["warnings"].append(f"no private /proc ({error.strerror}): host processes visible, not signalable")
        report["pid_namespace"] = True
        return
    result.write(f"ns {pid}\n")
    result.flush()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):  # die the same way, so the caller reports the signal
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _drop_capabilities():
    """The user namespace gave this process every capability in it (it could undo the read-only mounts): drop them
    all, the bounding set first (that needs CAP_SETPCAP), so neither the program nor what it runs gets any back."""
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        last = int(handle.read())
    for cap in range(last + 1):
        _call(libc.prctl, PR_CAPBSET_DROP, cap, 0, 0, 0)
    data = (_CapData * 2)()
    _call(libc.capset, ctypes.byref(_CapHeader(LINUX_CAPABILITY_VERSION_3, 0)), data)


def _limits(header, report):
    seconds = int(header["cpu_s"])
    mib = 1 << 20
    limits = {
        "RLIMIT_CPU": (seconds, seconds + 1),
        "RLIMIT_AS": (header["memory_mb"] * mib,) * 2,
        "RLIMIT_FSIZE": (header["file_mb"] * mib,) * 2,
        "RLIMIT_NPROC": (header["nproc"],) * 2,
        "RLIMIT_NOFILE": (256, 256),
        "RLIMIT_CORE": (0, 0),
    }
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), value)
        report["rlimits"][name] = value[0]


def _unconfined(header, report):
    """No namespaces (the last warning says why): stop, unless the caller opted in to running without them."""
    if not header.get("allow_unconfined"):
        raise OSError(f"namespaces refused: {report['warnings'][-1]}")
    report["confined"] = False
    report["warnings"].append("running unconfined (allow_unconfined)")


def isolate(header, report, result):
    root = os.geteuid() == 0
    if root:
        work = _namespaces_as_root(header, report)
        if work is None:  # no mount namespace: a stdlib in a hidden folder is only reachable before the drop
            _unconfined(header, report)
            for module in PRELOAD:
                __import__(module)
            report["warnings"].append(f"modules outside {list(PRELOAD)} may not import (no mount namespace)")
    else:
        work = _namespaces_as_user(header, report)
        if work is None:
            _unconfined(header, report)
            report["warnings"].append("not root: no mount namespace, files are protected by permissions only")
        else:
            header["nproc"] += 1  # the waiting parent below is one more process of this uid
            _pid_one(result, report)
    _limits(header, report)
    if root:
        os.setgroups([])
        os.setgid(header["gid"])
        os.setuid(header["uid"])
        if os.getuid() == 0 or os.geteuid() == 0:
            raise OSError("privilege drop failed")
    elif report.get("pid_namespace"):
        _drop_capabilities()
    else:
        report["warnings"].append("not root: no privilege drop, the process cap counts all of this user's processes")
    report["uid"] = os.getuid()
    # No setuid binary can hand privileges back; a dead parent takes this process with it.
    _call(libc.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _call(libc.prctl, PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    report["no_new_privs"] = True
    work = work or header["workdir"]
    os.chdir(work)
    report["workdir"] = work
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"})


def main():
    header = json.loads(sys.stdin.buffer.readline())
    program = sys.stdin.buffer.read().decode("utf-8", "replace")
    result = os.fdopen(os.dup(1), "w", buffering=1)
    os.set_inheritable(result.fileno(), False)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    report = {"uid": None, "confined": True, "network": "shared", "tmpfs": [], "hidden": [], "rlimits": {},
              "warnings": []}
    try:
        isolate(header, report, result)
    except Exception as error:  # noqa: BLE001 - report why, run nothing
        result.write(f"error isolation failed: {type(error).__name__}: {error}\n")
        os._exit(2)
    result.write("iso " + json.dumps(report) + "\n")
    nonce = header.pop("nonce")
    scope = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(program, "program.py", "exec"), scope)
    except BaseException as error:  # SystemExit included: leaving early is never a pass
        result.write(f"fail {type(error).__name__}: {str(error)[:200]!r}\n")
        result.flush()
        os._exit(1)
    result.write(f"pass {nonce}\n")
    result.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
