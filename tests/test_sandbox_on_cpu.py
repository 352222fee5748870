"""The HumanEval sandbox: canonical solutions pass, junk fails, and hostile programs score 0 and leave no trace.

Programs that only end by the wall clock run with a 1 s one (`SHORT`); every other program gets 30 s (`LIMITS`),
which it never uses up: on a loaded machine an interpreter start alone can take over a second, and a limit that load
can reach would make a verdict depend on the machine's day. A process cap is set before any program starts, so none
can harm this shared machine. The checks look from the outside: files, sockets, processes, the temp folder, and this
process being alive. Every test holds as root and as an ordinary user (CI runs this file a second time as one, see
.ci/run): what only root has (the dedicated uid, no groups) is checked inside the tests under `if ROOT`, and one
test runs the sandbox as `nobody` from a root run.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import pytest

from passk_exp.benchmarks import load_benchmark
from passk_exp.benchmarks.humaneval import CODEX_STOPS, program_for, truncate
from passk_exp.benchmarks.sandbox import DEDICATED_UID_BASE, SandboxLimits, _pids_of, run_program

REPO = Path(__file__).resolve().parent.parent
ROOT = os.geteuid() == 0
LIMITS = SandboxLimits(timeout_s=30.0, memory_mb=512, processes=6)
SHORT = SandboxLimits(timeout_s=1.0, memory_mb=512, processes=6)
# Far above any sandbox start and cleanup, however loaded the machine: only a sandbox that fails to stop a program
# at its wall clock (these run programs that never end by themselves) can cross it.
OVERRUN_S = 60.0


def sandbox_uid() -> int:
    return DEDICATED_UID_BASE + os.getpid()


def leftovers() -> list[int]:
    return _pids_of(sandbox_uid()) if ROOT else []


def run(program: str, limits: SandboxLimits = LIMITS):
    # The sandbox's temporary folder goes into a folder of this call's own: other processes on the machine (other
    # test runs) make and remove theirs in the shared temp folder at the same time.
    private = tempfile.mkdtemp(prefix="passk-sandbox-test-")
    saved, tempfile.tempdir = tempfile.tempdir, private
    try:
        start = time.monotonic()
        result = run_program(program, limits)
        assert time.monotonic() - start < limits.timeout_s + OVERRUN_S, "the sandbox did not stop the program"
    finally:
        tempfile.tempdir = saved
    assert not leftovers(), "processes of the sandbox uid survived"
    assert os.listdir(private) == [], "temp folder left"
    os.rmdir(private)
    return result


@pytest.fixture(scope="module")
def humaneval():
    with load_benchmark("humaneval", timeout_s=30.0) as bench:  # only junk that loops forever would use it up
        yield bench


# -- correctness ------------------------------------------------------------------------------------------------------
def test_all_164_canonical_solutions_pass(humaneval):
    problems = humaneval.problems("test")
    assert len(problems) == 164
    assert humaneval.score(problems, [p.answer for p in problems]) == [1.0] * 164


JUNK = ["    pass\n", "    return None\n", "}}} not python {{{", "\x00\x01\x02", "    return 0\n", "\ufffd" * 5000]


def test_empty_and_garbage_completions_score_zero_on_all_164(humaneval):
    problems = humaneval.problems("test")
    assert humaneval.score(problems, [""] * 164) == [0.0] * 164
    assert humaneval.score(problems, [JUNK[i % len(JUNK)] for i in range(164)]) == [0.0] * 164


def test_completion_is_cut_at_the_codex_stop_sequences(humaneval):
    problem = humaneval.problems("test")[2]  # truncate_number: return number % 1.0
    completion = problem.answer + "\n\ndef unrelated():\n    raise SystemExit(1)\n"
    assert truncate(completion, CODEX_STOPS).rstrip() == problem.answer.rstrip()
    assert humaneval.score([problem], [completion]) == [1.0]


def test_chat_replies_with_a_code_block_are_understood():
    with load_benchmark("humaneval", chat=True, workers=0) as bench:
        problem = bench.problems("test")[2]
        full = f"Here you go:\n```python\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n```"
        body = "```python\n    return number % 1.0\n```"
        assert isinstance(problem.prompt, list)
        assert bench.score([problem, problem, problem], [full, body, "I cannot do that."]) == [1.0, 1.0, 0.0]


def test_the_isolation_is_reported(humaneval):
    isolation = humaneval.isolation()
    assert isolation["probe"] == "pass"
    assert {"RLIMIT_NPROC", "RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE"} <= set(isolation["rlimits"])
    if ROOT:
        assert isolation["user"].startswith("dedicated uid") and isolation["uid"] >= DEDICATED_UID_BASE


# -- a pass needs the program to run to its end -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "exit_call", ["import os\nos._exit(0)", "import sys\nsys.exit(0)", "raise SystemExit", "exit()", "quit(0)"]
)
def test_leaving_early_with_a_zero_exit_code_never_passes(humaneval, exit_call):
    problem = humaneval.problems("test")[2]
    completion = "    return number % 1.0\n" + exit_call + "\n"  # correct body, then an exit before the tests
    assert humaneval.score([problem], [completion]) == [0.0]
    assert not run(exit_call + "\n").passed


def test_a_clean_program_passes_and_a_failing_one_does_not():
    assert run("assert sum(range(4)) == 6\n").passed
    result = run("assert 1 == 2\n")
    assert not result.passed and "AssertionError" in result.detail


# -- hostile programs -------------------------------------------------------------------------------------------------
def test_fork_bomb_is_capped_and_fully_reaped():
    result = run("import os\nwhile True:\n    os.fork()\n")
    assert not result.passed


def test_fork_bomb_that_swallows_errors_is_killed_at_the_timeout():
    result = run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", SHORT)
    assert not result.passed and result.status in ("timeout", "fail")


def test_infinite_loop_is_stopped_by_the_wall_clock():
    result = run("while True:\n    pass\n", SHORT)
    assert not result.passed


def test_sleeping_forever_is_stopped_by_the_wall_clock():
    result = run("import time\ntime.sleep(3600)\n", SHORT)
    assert not result.passed and result.status == "timeout"


@pytest.mark.parametrize(
    "program",
    ["x = bytearray(64 * 1024 ** 3)\n", "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 ** 2))\n"],
    ids=["one-huge", "gradual"],
)
def test_huge_allocations_fail_inside_the_sandbox(program):
    result = run(program)
    assert not result.passed and "MemoryError" in result.detail


def test_writing_a_huge_file_is_cut_by_the_file_size_limit():
    assert not run("with open('big', 'wb') as f:\n    while True:\n        f.write(b'0' * 2 ** 20)\n").passed


def test_flooding_stdout_cannot_pose_as_a_result_or_exhaust_memory():
    assert not run("import sys\nwhile True:\n    sys.stdout.write('pass deadbeef\\n' * 1000)\n", SHORT).passed


@pytest.fixture
def outside_files(tmp_path):
    """World-writable files in world-writable folders outside the sandbox: under /tmp and in the repository."""
    outside = Path(tempfile.mkdtemp(dir=REPO, prefix=".sandbox-target-"))
    try:
        targets = []
        for folder in (tmp_path, outside):
            folder.chmod(0o777)
            target = folder / "precious.txt"
            target.write_text("keep me")
            target.chmod(0o666)
            targets.append(target)
        yield targets
    finally:
        for target in (outside / "precious.txt",):
            target.unlink(missing_ok=True)
        outside.rmdir()


def test_files_outside_the_working_folder_cannot_be_deleted_or_changed(outside_files):
    for target in outside_files:
        assert not run(f"import os\nos.remove({str(target)!r})\n").passed
        program = f"open({str(target)!r}, 'w').write('gone')\n"
        assert not run(program).passed
        program = f"import shutil\nshutil.rmtree({str(target.parent)!r})\n"
        assert not run(program).passed
        assert target.read_text() == "keep me"


def test_no_socket_reaches_the_host_or_the_network():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        tcp = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=0.5).sendall(b'x')\n"
        assert not run(tcp).passed
        udp = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'x', ('8.8.8.8', 53))\n"
        assert not run(udp).passed
        dns = "import socket\nsocket.getaddrinfo('pypi.org', 443)\n"
        assert not run(dns).passed
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected
    finally:
        server.close()


def test_the_home_folder_and_the_environment_are_out_of_sight(monkeypatch):
    monkeypatch.setenv("PASSK_SANDBOX_SECRET", "hunter2")
    home, stdlib = Path.home(), Path(os.__file__).resolve()
    stdlib_top = stdlib.relative_to(home).parts[0] if home in stdlib.parents else None  # re-exposed read-only
    visible = sorted(p.name for p in home.iterdir() if p.name != stdlib_top)[:50]
    if visible:
        assert not run(f"import os\nassert set(os.listdir({str(home)!r})) & set({visible!r})\n").passed
    assert not run("import os\nassert os.environ.get('PASSK_SANDBOX_SECRET') == 'hunter2'\n").passed
    assert not run("import os\nassert 'PASSK_SANDBOX_SECRET' in open('/proc/self/environ').read()\n").passed
    assert run("import os\nassert set(os.environ) <= {'PATH', 'HOME', 'TMPDIR', 'LANG'}\n").passed


def test_killing_the_parent_fails_and_the_trainer_and_pool_survive(humaneval):
    problem = humaneval.problems("test")[2]
    killers = [
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n",
        "import os, signal\nos.kill(-1, signal.SIGKILL)\n",  # every process it may signal: only its own
    ]
    completions = ["    return number % 1.0\n" + killer for killer in killers]
    scores = humaneval.score([problem] * 3, completions)
    if ROOT:
        # Killing the parent or its group is refused (PermissionError ends the program: 0). kill(-1) reaches only the
        # program's own uid and spares the caller, so that correct solution still runs its tests: 1.
        assert scores == [0.0, 0.0, 1.0]
    # As a user the parent lies outside the program's PID namespace (getppid() is 0 in there, kill(-1) finds no one):
    # whether a signal to its own process group ends the runner before the tests do is a race, so only what matters
    # is checked: the pool that scored them, and this process, are alive.
    assert humaneval.score([problem], [problem.answer]) == [1.0]  # same pool, still alive
    for killer in killers[:2]:
        result = run(killer)  # here the parent is this test process
        assert not result.passed or not ROOT
    run(killers[2])
    assert os.getppid() > 1


def sleepers(marker: str) -> list[int]:
    """Live processes running `sleep <marker>` (any user's: /proc/<pid>/cmdline is world-readable)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() == f"sleep\x00{marker}\x00".encode():
                    found.append(int(pid))
            except OSError:
                continue
    return found


def test_background_processes_are_killed_however_they_detach():
    marker = f"{300 + os.getpid() % 1000}.{time.monotonic_ns() % 10**6}"  # this run's sleepers only
    programs = [
        # double fork + new session: the classic daemon
        "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv('/bin/sleep', ['sleep', {marker!r}])\n    os._exit(0)\n",
        # a detached child process from a binary
        f"import subprocess\nsubprocess.Popen(['sleep', {marker!r}], start_new_session=True)\n",
        # a child that ignores the signals it can ignore (ignored signals stay ignored across exec)
        "import os, signal\nif os.fork() == 0:\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"    signal.signal(signal.SIGHUP, signal.SIG_IGN)\n    os.execv('/bin/sleep', ['sleep', {marker!r}])\n",
    ]
    for program in programs:
        # The main program itself finishes; run_program returns only once its cleanup is done, so nothing it
        # started may be alive by then (the leftovers of a dedicated uid are checked by run() as well).
        assert run(program).passed
        assert not sleepers(marker)


def test_the_program_runs_unprivileged_and_cannot_regain_root():
    assert run("import os\nassert os.getuid() != 0 and os.geteuid() != 0\n").passed
    assert not run("import os\nos.setuid(0)\n").passed
    assert not run("import subprocess\nsubprocess.run(['su', '-c', 'true'], check=True)\n").passed
    if ROOT:
        assert run("import os\nassert os.getgroups() == []\n").passed


def test_the_filesystem_cannot_be_made_writable_again(outside_files):
    """Without root the program's user namespace once held every capability in it: none may be left to undo the
    read-only mounts, not even through a nested user namespace (its mounts arrive locked)."""
    target = outside_files[-1]
    remounts = [
        "subprocess.run(['mount', '-o', 'remount,rw', '/'], check=True)",
        "subprocess.run(['umount', '-l', '/tmp'], check=True)",
        f"subprocess.run(['unshare', '-Urm', 'sh', '-c', 'mount -o remount,rw / ; rm {target}'], check=True)",
    ]
    for remount in remounts:
        run(f"import subprocess\n{remount}\n")
    assert target.read_text() == "keep me"


def test_rlimits_are_set_inside_the_sandbox():
    limits = SandboxLimits(timeout_s=30.0, memory_mb=300, processes=5, file_mb=3)
    program = (
        "import resource\n"
        "assert resource.getrlimit(resource.RLIMIT_AS)[0] == 300 * 2 ** 20\n"
        "assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == 3 * 2 ** 20\n"
        "assert resource.getrlimit(resource.RLIMIT_CPU)[0] == 31\n"
        "assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)\n"
        "assert resource.getrlimit(resource.RLIMIT_NOFILE) == (256, 256)\n"
        # root: exactly the cap (a dedicated uid); a user: the cap plus the user's processes outside the sandbox
        "assert resource.RLIM_INFINITY != resource.getrlimit(resource.RLIMIT_NPROC)[0] >= 5\n"
    )
    assert run(program, limits).passed


def test_program_builder_appends_tests_and_check():
    meta = {"prompt": "def f(x):\n", "entry_point": "f", "test": "def check(c):\n    assert c(1) == 2\n"}
    program = program_for(meta, "    return x + 1\n", chat=False, stops=CODEX_STOPS)
    assert program.startswith("def f(x):\n    return x + 1\n") and program.rstrip().endswith("check(f)")
    assert run(program).passed


# -- where the kernel refuses namespaces ------------------------------------------------------------------------------
REFUSED = "no user namespace as a non-root user (Operation not permitted)"


def test_scoring_stops_with_one_line_where_namespaces_are_refused(monkeypatch):
    import passk_exp.benchmarks.humaneval as humaneval_module

    monkeypatch.setattr(humaneval_module, "confinement_refused", lambda: REFUSED)
    with pytest.raises(ValueError) as error:
        load_benchmark("humaneval", workers=0)
    message = str(error.value)
    assert "\n" not in message and REFUSED in message
    assert "user.max_user_namespaces" in message and "benchmark.allow_unconfined=true" in message


def test_the_runner_refuses_to_run_unconfined_unless_allowed_and_the_probe_says_why(monkeypatch):
    from passk_exp.benchmarks import sandbox, sandbox_runner

    report = {"warnings": [REFUSED]}
    with pytest.raises(OSError, match="namespaces refused"):
        sandbox_runner._unconfined({"allow_unconfined": False}, report)
    sandbox_runner._unconfined({"allow_unconfined": True}, report)
    assert report["confined"] is False
    # The runner's failure line, as run_program returns it, is what the probe reports.
    detail = f"error isolation failed: OSError: namespaces refused: {REFUSED}"
    monkeypatch.setattr(sandbox, "run_program", lambda *_: sandbox.RunResult(False, "error", detail, 0.1))
    assert sandbox._confinement_refused.__wrapped__(-1) == REFUSED


def test_unconfined_scoring_is_an_explicit_opt_in_and_tags_the_run(monkeypatch, caplog):
    import passk_exp.benchmarks.humaneval as humaneval_module
    from passk_exp.trainer import run_tags

    from conftest import compose

    monkeypatch.setattr(humaneval_module, "confinement_refused", lambda: REFUSED)
    with load_benchmark("humaneval", workers=0, allow_unconfined=True) as bench:
        assert bench.limits.allow_unconfined
        problem = bench.problems("test")[2]
        assert bench.score([problem], [problem.answer]) == [1.0]
    assert "scoring unconfined" in caplog.text
    assert run_tags(compose(["benchmark=humaneval", "benchmark.allow_unconfined=true"]))["sandbox"] == (
        "unconfined_allowed"
    )
    assert "sandbox" not in run_tags(compose(["benchmark=humaneval"]))
    with pytest.raises(ValueError, match="allow_unconfined='yes' must be true or false"):
        load_benchmark("humaneval", workers=0, allow_unconfined="yes")  # a truthy string is no explicit opt-in


# -- as an ordinary user, from a root run -----------------------------------------------------------------------------
def _others_can_reach(path: Path) -> bool:
    return all(folder.stat().st_mode & 0o001 for folder in [path, *path.parents])


def _outside_folder_for_others() -> Path | None:
    """A folder outside the sandbox's tmpfs and home folders that other users can reach and root can write."""
    for candidate in (REPO, Path("/srv"), Path("/opt"), Path("/mnt"), Path("/var/lib")):
        if candidate.is_dir() and _others_can_reach(candidate) and os.access(candidate, os.W_OK):
            return candidate
    return None


@pytest.mark.skipif(not ROOT, reason="switching to the user 'nobody' needs root (this run is a user's already)")
def test_as_an_unprivileged_user_files_processes_and_network_stay_confined(tmp_path):
    """A SLURM job is not root: run the sandbox as `nobody` on a readable copy of its two files (it needs nothing
    else from the checkout, which may sit in a folder other users cannot read) against a file `nobody` owns."""
    import json
    import pwd
    import shutil
    import subprocess
    import sys

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    as_nobody = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": [], "cwd": "/"}

    def runnable(exe: str) -> bool:
        try:
            return subprocess.run([exe, "-I", "-c", "pass"], capture_output=True, timeout=120, **as_nobody).returncode == 0
        except OSError:  # not executable by that user
            return False

    python = next((exe for exe in (sys.executable, "/usr/bin/python3") if runnable(exe)), None)
    if python is None:
        pytest.skip("no Python interpreter that user 'nobody' can run (this one lives in an unreadable folder)")
    outside = _outside_folder_for_others()
    if outside is None:
        pytest.skip("no folder outside /tmp and the home folders that 'nobody' can reach")
    code_dir = Path(tempfile.mkdtemp(prefix="passk-sandbox-code-"))
    target_dir = Path(tempfile.mkdtemp(dir=outside, prefix=".sandbox-target-"))
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        for name in ("sandbox.py", "sandbox_runner.py"):
            shutil.copy(REPO / "passk_exp" / "benchmarks" / name, code_dir / name)
        code_dir.chmod(0o755)
        target = target_dir / "precious.txt"
        target.write_text("keep me")
        os.chown(target_dir, nobody.pw_uid, nobody.pw_gid)
        os.chown(target, nobody.pw_uid, nobody.pw_gid)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.setblocking(False)
        marker = f"{300 + os.getpid() % 1000}.{time.monotonic_ns() % 10**6}"
        programs = {
            "delete": f"import os\nos.remove({str(target)!r})\n",
            "change": f"open({str(target)!r}, 'w').write('gone')\n",
            "daemon": f"import subprocess\nsubprocess.Popen(['sleep', {marker!r}], start_new_session=True)\n",
            "connect": f"import socket\nsocket.create_connection(('127.0.0.1', {server.getsockname()[1]}), 0.5)\n",
        }
        script = (
            f"import json, sys\nsys.path.insert(0, {str(code_dir)!r})\n"
            "from sandbox import SandboxLimits, confinement_refused, run_program\n"
            f"programs = {programs!r}\nrefused = confinement_refused()\n"
            "results = {} if refused else {name: run_program(program, SandboxLimits(timeout_s=30.0)).__dict__\n"
            "                              for name, program in programs.items()}\n"
            "print(json.dumps({'refused': refused, 'results': results}))\n"
        )
        done = subprocess.run(
            [python, "-I", "-c", script], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300,
            **as_nobody,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outcome = json.loads(done.stdout.strip().splitlines()[-1])
        if outcome["refused"]:
            pytest.skip(f"this kernel refuses user namespaces to other users: {outcome['refused']}")
        results = outcome["results"]
        assert not results["delete"]["passed"] and not results["change"]["passed"]
        assert target.read_text() == "keep me"
        assert results["daemon"]["passed"] and not sleepers(marker)
        assert results["daemon"]["isolation"]["cleanup"].startswith("PID namespace")
        assert not results["connect"]["passed"]
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected
        isolation = results["daemon"]["isolation"]
        assert isolation["confined"] and isolation["uid"] == nobody.pw_uid and not isolation["warnings"]
        assert isolation["rlimits"]["RLIMIT_AS"] == 1024 * 2**20
    finally:
        server.close()
        shutil.rmtree(code_dir, ignore_errors=True)
        shutil.rmtree(target_dir, ignore_errors=True)
