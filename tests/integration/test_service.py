"""A started instance: occlum start, exec, ps, kill, status, stop, and restarting it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

OCCLUM = str(Path(sys.executable).parent / "occlum")
DIAG = Path(__file__).resolve().parent.parent / "c" / "diag"
TOOLS = ("sh:dash", "bash", "cat", "wc", "grep", "sleep", "ls", "tr")


def occlum(
    inst: Instance, *args: str, stdin: bytes | None = None, timeout: float = 60
) -> libos.Result:
    env = {**os.environ, "OCCLUM_LOG_LEVEL": "error"}
    proc = subprocess.run(
        [OCCLUM, *args], cwd=inst.path, input=stdin if stdin is not None else b"",
        capture_output=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip
    return libos.Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    inst = Instance.new(tmp_path_factory.mktemp("service") / "instance")
    inst.configure()
    binaries = {}
    for tool in TOOLS:
        inside, _, host = tool.partition(":")
        binaries[f"/bin/{inside}"] = Path("/bin") / (host or inside)
    work = tmp_path_factory.mktemp("service-bin")
    binaries["/bin/lacking"] = libos.compile_c(DIAG / "lacking.c", work / "lacking")
    libos.place_with_dependencies(inst.image, binaries)
    inst.build()
    yield inst
    occlum(inst, "stop", "-t", "0")  # whatever a failed test left running


@pytest.fixture
def started(instance: Instance) -> Iterator[Instance]:
    res = occlum(instance, "start")
    assert res.code == 0, res.describe()
    try:
        yield instance
    finally:
        occlum(instance, "stop", "-t", "1")


def _server_pid(inst: Instance) -> int:
    return int((inst.path / "run" / "server.pid").read_text())


def test_concurrent_execs_kill_stop_and_restart(started: Instance) -> None:
    inst = started
    wait_file = "while [ ! -s /root/note.txt ]; do sleep 0.05; done"
    commands: list[tuple[list[str], int]] = [
        (["/bin/sh", "-c", "echo 'written inside' > /root/note.txt; exit 3"], 3),
        (["/bin/sleep", "100"], 128 + signal.SIGTERM),  # killed with occlum kill below
    ]
    for i in range(4):
        commands.append(
            (["/bin/sh", "-c", f"{wait_file}; cat /root/note.txt; exit {10 + i}"], 10 + i)
        )
    pipeline = f"{wait_file}; cat /root/note.txt | tr a-z A-Z | grep -c WRITTEN"
    commands += [(["/bin/sh", "-c", pipeline], 0)] * 4
    assert len(commands) == 10
    env = {**os.environ, "OCCLUM_LOG_LEVEL": "error"}
    procs = [
        subprocess.Popen(
            [OCCLUM, "exec", *argv],
            cwd=inst.path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for argv, _code in commands
    ]
    # the sleeper shows in occlum ps; occlum kill ends it
    deadline = time.monotonic() + 30
    sleeper = None
    while sleeper is None and time.monotonic() < deadline:
        listing = occlum(inst, "ps")
        assert listing.code == 0, listing.describe()
        for line in listing.stdout.splitlines():
            cells = [c.strip() for c in line.split("│") if c.strip()]
            if cells and cells[-1] == "sleep 100":  # argv[0] is the file name
                sleeper = int(cells[0])
        time.sleep(0.1)
    assert sleeper is not None, "the sleeping program never showed in occlum ps"
    killed = occlum(inst, "kill", str(sleeper))
    assert killed.code == 0, killed.describe()
    outputs = []
    for proc, (argv, code) in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=60)
        outputs.append(out.decode())
        assert proc.returncode == code, (argv, proc.returncode, err.decode())
    for out in outputs[2:6]:
        assert out == "written inside\n"
    for out in outputs[6:]:
        assert out == "1\n"
    status = occlum(inst, "status")
    assert "started" in status.stdout and "server pid" in status.stdout, status.stdout
    stopped = occlum(inst, "stop")
    assert stopped.code == 0, stopped.describe()
    assert not (inst.path / "run" / "occlum.sock").exists()
    # written to the encrypted root layer: not in the clear on the host
    for path in (inst.path / "run").rglob("*"):
        if path.is_file():
            assert b"written inside" not in path.read_bytes(), path
    again = occlum(inst, "start")
    assert again.code == 0, again.describe()
    back = occlum(inst, "exec", "/bin/cat", "/root/note.txt")
    assert (back.code, back.stdout) == (0, "written inside\n"), back.describe()


def test_exec_passes_stdin_arguments_environment_and_status(started: Instance) -> None:
    res = occlum(started, "exec", "/bin/cat", stdin=b"one\ntwo\n")
    assert (res.code, res.stdout) == (0, "one\ntwo\n"), res.describe()
    res = occlum(started, "exec", "/bin/sh", "-c", 'echo "$1 $OCCLUM_TEST"; exit 7', "sh", "arg")
    assert res.code == 7, res.describe()
    assert res.stdout.startswith("arg "), res.stdout
    # the LibOS's /proc agrees with getppid() about the program's parent (the spawner)
    res = occlum(started, "exec", "/bin/sh", "-c", 'grep PPid /proc/$$/status; echo "$PPID"')
    ppid_line, ppid = res.stdout.split("\n")[:2]
    assert ppid_line.split() == ["PPid:", ppid], res.stdout
    res = occlum(started, "exec", "/bin/sh", "-c", "kill -SEGV $$")
    assert res.code == 128 + signal.SIGSEGV
    assert "killed by SIGSEGV" in res.stderr


# argv[0] is the program's file name, as Occlum's `occlum run` and `occlum exec` give it
def test_occlum_run_gives_the_program_its_file_name_as_argv0(instance: Instance) -> None:
    res = occlum(instance, "run", "/bin/cat", "/proc/self/cmdline")
    assert (res.code, res.stdout) == (0, "cat\0/proc/self/cmdline\0"), res.describe()
    res = occlum(instance, "run", "/bin/sh", "-c", 'echo "$0"')
    assert (res.code, res.stdout) == (0, "sh\n"), res.describe()


def test_occlum_exec_gives_the_program_its_file_name_as_argv0(started: Instance) -> None:
    res = occlum(started, "exec", "/bin/cat", "/proc/self/cmdline")
    assert (res.code, res.stdout) == (0, "cat\0/proc/self/cmdline\0"), res.describe()
    res = occlum(started, "exec", "/bin/sh", "-c", 'echo "$0"')
    assert (res.code, res.stdout) == (0, "sh\n"), res.describe()


def test_a_program_off_path_gets_its_path_as_argv0(tmp_path: Path) -> None:
    """With the program's directory off PATH (Occlum.json's default environment has none), a
    bare file name would leave the program no way to find itself (Python's sys.executable is
    then empty and subprocess fails): it gets the path."""
    inst = Instance.new(tmp_path / "instance")
    inst.configure(env={"OCCLUM": "yes"})
    libos.place_with_dependencies(inst.image, {"/bin/sh": Path("/bin/dash")})
    inst.build()
    res = occlum(inst, "run", "/bin/sh", "-c", 'echo "$0"')
    assert (res.code, res.stdout) == (0, "/bin/sh\n"), res.describe()


def test_ctrl_c_on_the_client_interrupts_the_program(started: Instance) -> None:
    proc = subprocess.Popen(
        [OCCLUM, "exec", "/bin/sh", "-c", "echo up; sleep 100 | cat"], cwd=started.path,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"up\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGINT
    listing = occlum(started, "ps")
    assert "sleep" not in listing.stdout, listing.stdout  # the whole pipeline got it


def test_the_libos_tells_the_exec_caller_what_it_refused(instance: Instance) -> None:
    """Warnings about a program reach its `occlum exec` caller (the server's log level is
    the one `occlum start` was given)."""
    env = {**os.environ, "OCCLUM_LOG_LEVEL": "warn"}

    def call(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [OCCLUM, *args], cwd=instance.path, capture_output=True, env=env, timeout=60,
            check=False,
        )  # fmt: skip

    assert call("start").returncode == 0
    try:
        proc = call("exec", "/bin/lacking")
    finally:
        call("stop", "-t", "1")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "ptrace: -1 Operation not permitted" in proc.stdout.decode()
    assert "[occlum warn] ptrace is refused inside the LibOS (EPERM: " in err, err
    assert "/bin/lacking" in err
    # and the server's log keeps it too
    assert "ptrace is refused" in (instance.path / "run" / "server.log").read_text()


def _take_terminal() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_exec_under_a_terminal_gives_an_interactive_shell(started: Instance) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [OCCLUM, "exec", "/bin/bash", "--norc", "--noprofile", "-i"], cwd=started.path,
        stdin=slave, stdout=slave, stderr=slave, preexec_fn=_take_terminal,
    )  # fmt: skip
    os.close(slave)
    seen = b""

    def expect(text: bytes, timeout: float = 20) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {text!r} on the terminal:\n{seen!r}")
            try:
                seen += os.read(master, 4096)
            except OSError:
                raise AssertionError(f"the terminal closed before {text!r}:\n{seen!r}")
        seen = seen[seen.index(text) + len(text) :]

    try:
        expect(b"# ")
        os.write(master, b"test -t 0 && echo tty-$((6*7))\n")
        expect(b"tty-42")
        # /dev/tty is the program's controlling terminal (the server has none of its own)
        os.write(master, b"echo via-$((5*5)) > /dev/tty\n")
        expect(b"via-25")
        os.write(master, b"sleep 100\n")
        expect(b"sleep 100\r\n")
        time.sleep(0.5)
        os.write(master, b"\x1a")  # Ctrl-Z: job control inside
        expect(b"Stopped")
        os.write(master, b"fg\n")
        expect(b"sleep 100\r\n")
        time.sleep(0.5)
        os.write(master, b"\x03")  # Ctrl-C
        os.write(master, b"echo status $?\n")
        expect(b"status 130")
        os.write(master, b"exit 4\n")
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert code == 4


def test_refusals_and_a_crashed_server(instance: Instance) -> None:
    res = occlum(instance, "exec", "/bin/cat")
    assert res.code == 1
    assert (
        res.stderr.strip() == "occlum: error: the instance is not started (occlum start starts it)"
    )
    assert occlum(instance, "start").code == 0
    try:
        twice = occlum(instance, "start")
        assert twice.code == 1 and "already started" in twice.stderr, twice.describe()
        run = occlum(instance, "run", "/bin/cat")
        assert run.code == 1 and "occlum exec" in run.stderr, run.describe()
        outside = occlum(instance, "exec", "/etc/passwd")
        assert outside.code != 0 and "entry point" in outside.stderr, outside.describe()
        missing = occlum(instance, "kill", "999")
        assert missing.code == 1 and "no process 999" in missing.stderr, missing.describe()
        bad_sig = occlum(instance, "kill", "-s", "NOPE", "2")
        assert bad_sig.code == 1 and "unknown signal" in bad_sig.stderr
        # a server killed outright: clients are told, never left hanging
        os.kill(_server_pid(instance), signal.SIGKILL)
        time.sleep(0.5)
        gone = occlum(instance, "exec", "/bin/cat", timeout=20)
        assert gone.code == 1 and "server is gone" in gone.stderr, gone.describe()
        assert "Traceback" not in gone.stderr
        assert "ended without cleaning up" in occlum(instance, "status").stdout
        again = occlum(instance, "start")
        assert again.code == 0, again.describe()
        assert occlum(instance, "exec", "/bin/sh", "-c", "exit 0").code == 0
    finally:
        occlum(instance, "stop", "-t", "1")


def test_a_second_run_of_the_instance_is_refused_while_one_runs(instance: Instance) -> None:
    """Two LibOS instances must not share the encrypted root layer's journal."""
    first = subprocess.Popen(
        [OCCLUM, "run", "/bin/sh", "-c", "echo up; sleep 30"], cwd=instance.path,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert first.stdout is not None
        assert first.stdout.readline() == b"up\n"
        second = occlum(instance, "run", "/bin/sh", "-c", "echo second")
        assert second.code == 1, second.describe()
        assert second.stdout == ""
        assert "in use by another running LibOS" in second.stderr, second.describe()
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    finally:
        first.kill()
        first.communicate(timeout=20)
    after = occlum(instance, "run", "/bin/sh", "-c", "echo alone")
    assert (after.code, after.stdout) == (0, "alone\n"), after.describe()
