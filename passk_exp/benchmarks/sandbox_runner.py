"""The program started inside the sandbox: isolate this process, then run untrusted Python code in it.

Started by `sandbox.py` as `python -I -S -B sandbox_runner.py`, standard library only (isolated mode puts neither this
folder nor site-packages on sys.path). Protocol: stdin holds one JSON header line, then the program; fd 1 is the result
channel and gets `iso <json>` (what isolation holds), then `pass <nonce>` only once the whole program has run to its
end, or `fail <reason>`. The program's own stdout and stderr go to /dev/null, so nothing it prints can pose as a
result, and it never sees the nonce's channel by name. Order matters: namespaces and mounts need root, so they come
first; limits are set before privileges drop, so the process cap binds before the program can fork.
"""

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
# The standard library must stay importable after the privilege drop, also when it lives in a hidden home folder
# (pyenv, uv). Where no mount namespace can re-expose it, these modules are imported before the drop instead.
STDLIB = os.path.dirname(os.__file__)
PRELOAD = (
    "math", "cmath", "re", "string", "collections", "itertools", "functools", "heapq", "bisect", "hashlib", "typing",
    "fractions", "decimal", "statistics", "random", "copy", "operator", "datetime", "json", "numbers", "array",
)

libc = ctypes.CDLL(None, use_errno=True)


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


def _namespaces_as_root(header, report):
    """New network and mount namespaces; private tmpfs over the temp folders; home folders hidden. Root only."""
    try:
        _call(libc.unshare, CLONE_NEWNS | CLONE_NEWNET)
    except OSError as error:
        report["warnings"].append(f"no network/mount namespace ({error.strerror})")
        return None
    report["network"] = "none (new network namespace)"
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
        os.chown(work, header["uid"], header["gid"])
    return work


def _network_namespace_as_user(report):
    """Without root: a user namespace makes a private network namespace possible where the kernel allows it."""
    try:
        _call(libc.unshare, CLONE_NEWUSER | CLONE_NEWNET)
        report["network"] = "none (new user + network namespace)"
    except OSError as error:
        report["warnings"].append(f"no network namespace as a non-root user ({error.strerror}); network reachable")


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


def isolate(header, report):
    root = os.geteuid() == 0
    work = None
    if root:
        work = _namespaces_as_root(header, report)
        if work is None:  # no mount namespace: a stdlib in a hidden folder is only reachable before the drop
            for module in PRELOAD:
                __import__(module)
            report["warnings"].append(f"modules outside {list(PRELOAD)} may not import (no mount namespace)")
    else:
        _network_namespace_as_user(report)
    _limits(header, report)
    if root:
        os.setgroups([])
        os.setgid(header["gid"])
        os.setuid(header["uid"])
        if os.getuid() == 0 or os.geteuid() == 0:
            raise OSError("privilege drop failed")
        report["uid"] = os.getuid()
    else:
        report["uid"] = os.getuid()
        report["warnings"].append("not root: no privilege drop, the process cap counts all of this user's processes")
        report["warnings"].append("not root: no mount namespace, files are protected by permissions only")
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
    report = {"uid": None, "network": "shared", "tmpfs": [], "hidden": [], "rlimits": {}, "warnings": []}
    try:
        isolate(header, report)
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
