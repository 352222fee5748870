"""The HumanEval sandbox: canonical solutions pass, junk fails, and hostile programs score 0 and leave no trace.

Each hostile case runs with a 1 s wall clock and a process cap set before the program starts, so none can take more
than a few seconds or harm this shared machine. The checks look from the outside: files, sockets, processes of the
sandbox uid, the temp folder, and this process being alive.
"""

from __future__ import annotations

import glob
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
LIMITS = SandboxLimits(timeout_s=1.0, memory_mb=512, processes=6)
needs_root = pytest.mark.skipif(not ROOT, reason="privilege drop and uid-wide cleanup need root")


def sandbox_uid() -> int:
    return DEDICATED_UID_BASE + os.getpid()


def leftovers() -> list[int]:
    return _pids_of(sandbox_uid()) if ROOT else []


def run(program: str, limits: SandboxLimits = LIMITS):
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "passk-sandbox-*")))
    start = time.monotonic()
    result = run_program(program, limits)
    assert time.monotonic() - start < limits.timeout_s + 4, "the sandbox overran its wall clock"
    assert not leftovers(), "processes of the sandbox uid survived"
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "passk-sandbox-*"))) <= before, "temp folder left"
    return result


@pytest.fixture(scope="module")
def humaneval():
    with load_benchmark("humaneval", timeout_s=5.0) as bench:
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
    result = run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    assert not result.passed and result.status in ("timeout", "fail")


def test_infinite_loop_is_stopped_by_the_wall_clock():
    result = run("while True:\n    pass\n")
    assert not result.passed


def test_sleeping_forever_is_stopped_by_the_wall_clock():
    result = run("import time\ntime.sleep(3600)\n")
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
    assert not run("import sys\nwhile True:\n    sys.stdout.write('pass deadbeef\\n' * 1000)\n").passed


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


@needs_root
def test_killing_the_parent_fails_and_the_trainer_and_pool_survive(humaneval):
    problem = humaneval.problems("test")[2]
    killers = [
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n",
        "import os, signal\nos.kill(-1, signal.SIGKILL)\n",  # every process it may signal: only its own uid
    ]
    completions = ["    return number % 1.0\n" + killer for killer in killers]
    # Killing the parent or its group is refused (PermissionError ends the program: 0). kill(-1) reaches only the
    # program's own uid and spares the caller, so that correct solution still runs its tests: 1.
    assert humaneval.score([problem] * 3, completions) == [0.0, 0.0, 1.0]
    assert humaneval.score([problem], [problem.answer]) == [1.0]  # same pool, still alive
    for killer in killers[:2]:
        assert not run(killer).passed  # here the parent is this test process
    assert run(killers[2]).passed and os.getppid() > 1


@needs_root
def test_background_processes_are_killed_however_they_detach():
    programs = [
        # double fork + new session: the classic daemon
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(300)\n"
        "    os._exit(0)\n",
        # a detached child process from a binary
        "import subprocess\nsubprocess.Popen(['sleep', '301'], start_new_session=True)\n",
        # a child that ignores the signals it can ignore
        "import os, signal, time\nif os.fork() == 0:\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    signal.signal(signal.SIGHUP, signal.SIG_IGN)\n    time.sleep(302)\n",
    ]
    for program in programs:
        assert run(program).passed  # the main program itself finishes: leftovers are checked by run()
    time.sleep(0.2)
    assert not leftovers()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert b"sleep\x00301" not in cmdline


@needs_root
def test_the_program_runs_unprivileged_and_cannot_regain_root():
    assert run("import os\nassert os.getuid() != 0 and os.geteuid() != 0 and os.getgroups() == []\n").passed
    assert not run("import os\nos.setuid(0)\n").passed
    assert not run("import subprocess\nsubprocess.run(['su', '-c', 'true'], check=True)\n").passed


def test_program_builder_appends_tests_and_check():
    meta = {"prompt": "def f(x):\n", "entry_point": "f", "test": "def check(c):\n    assert c(1) == 2\n"}
    program = program_for(meta, "    return x + 1\n", chat=False, stops=CODEX_STOPS)
    assert program.startswith("def f(x):\n    return x + 1\n") and program.rstrip().endswith("check(f)")
    assert run(program).passed


@needs_root
def test_without_root_the_sandbox_degrades_with_warnings_instead_of_crashing():
    """Run the sandbox as `nobody`, with the system interpreter (a venv may sit where `nobody` cannot read it)."""
    import json
    import subprocess

    system_python = Path("/usr/bin/python3")
    if not system_python.exists():
        pytest.skip("no system python3 an unprivileged user can run")
    code = (
        "import json\nfrom passk_exp.benchmarks.sandbox import SandboxLimits, run_program\n"
        "limits = SandboxLimits(timeout_s=2.0)\n"
        "ok = run_program('assert sum([1, 2]) == 3\\n', limits)\n"
        "bad = run_program('import os\\nos._exit(0)\\n', limits)\n"
        "print(json.dumps([ok.passed, bad.passed, ok.isolation]))\n"
    )
    result = subprocess.run(
        [str(system_python), "-c", code], user="nobody", group="nogroup", extra_groups=[], cwd="/",
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    passed, exit_passed, isolation = json.loads(result.stdout.strip().splitlines()[-1])
    assert passed and not exit_passed
    assert any("not root" in warning for warning in isolation["warnings"])
    assert isolation["cleanup"] == "process group" and isolation["rlimits"]["RLIMIT_NPROC"] >= 2
