"""The native `occlum exec` client (run/occlum-exec, instance/native/exec_client.c) does what
the Python client does: same outputs, exit codes, error lines and signal relay."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

OCCLUM = str(Path(sys.executable).parent / "occlum")
# the Python client, as the console script runs it when there is no native one
PYTHON_CLIENT = [
    sys.executable, "-c",
    "import sys; from occlum.cli.entry import python_exec; "
    "sys.exit(python_exec('.', None, sys.argv[1:]))",
]  # fmt: skip
ENV = {**os.environ, "OCCLUM_LOG_LEVEL": "error", "OCCLUM_TEST": "from the host"}


def _call(
    cmd: Sequence[str | bytes | Path],
    cwd: Path,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
) -> tuple[int, bytes, bytes]:
    proc = subprocess.run(
        cmd, cwd=cwd, input=stdin, capture_output=True, timeout=60, env=env or ENV, check=False
    )
    # each run is a new process: its LibOS pid differs from one client's run to the other's
    return proc.returncode, proc.stdout, re.sub(rb"\(pid \d+\)", b"(pid N)", proc.stderr)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    inst = Instance.new(tmp_path_factory.mktemp("exec-client") / "instance")
    inst.configure()
    cfg = inst.config()
    env_section = cfg["env"]
    assert isinstance(env_section, dict)
    env_section["untrusted"] = ["OCCLUM_TEST"]
    inst.write_config(cfg)
    tools = {"/bin/sh": Path("/bin/dash"), "/bin/cat": Path("/bin/cat")}
    tools["/bin/sleep"] = Path("/bin/sleep")
    libos.place_with_dependencies(inst.image, tools)
    inst.build()
    yield inst
    _call([OCCLUM, "stop", "-t", "0"], inst.path)


@pytest.fixture(scope="module")
def started(instance: Instance) -> Iterator[Instance]:
    code, _, err = _call([OCCLUM, "start"], instance.path)
    assert code == 0, err.decode()
    try:
        yield instance
    finally:
        _call([OCCLUM, "stop", "-t", "1"], instance.path)


CASES: list[tuple[list[str | bytes], bytes]] = [
    (["/bin/sh", "-c", "exit 0"], b""),
    (["/bin/cat"], b"one\ntwo\n"),
    (["/bin/sh", "-c", 'echo "$0 $1 [$OCCLUM_TEST]"; echo err >&2; exit 7', "sh", "arg"], b""),
    # arguments of any bytes, valid UTF-8 or not, reach the program unchanged
    (["/bin/sh", "-c", 'printf "%s|" "$@"', "sh", "caf\u00e9", b"\xff\xfe\xc3", 'x"\\\n\t'], b""),
    (["/bin/sh", "-c", "kill -SEGV $$"], b""),
    (["/bin/sh", "-c", "kill -ABRT $$"], b""),
    (["/bin/sh", "-c", "kill -TERM $$"], b""),
    (["/bin/sh", "-c", "kill -40 $$"], b""),  # a real-time signal, which Python cannot name
    (["/bin/sh", "-c", "kill -34 $$"], b""),
    (["/bin/nope"], b""),
    (["/etc/passwd"], b""),
    (["bin/sh"], b""),
]


@pytest.mark.parametrize("argv, stdin", CASES, ids=[str(i) for i in range(len(CASES))])
def test_the_native_client_answers_as_the_python_client(
    started: Instance, argv: list[str | bytes], stdin: bytes
) -> None:
    native = _call([started.path / "run" / "occlum-exec", *argv], started.path, stdin)
    python = _call([*PYTHON_CLIENT, *argv], started.path, stdin)
    assert native == python
    assert b"Traceback" not in native[2]
    # the console script hands a plain `occlum exec` to the native client
    assert _call([OCCLUM, "exec", *argv], started.path, stdin) == native


def test_an_environment_of_any_bytes_reaches_the_program_from_both_clients(
    started: Instance,
) -> None:
    env = {**os.environb, b"OCCLUM_TEST": b'caf\xc3\xa9 \xff\xfe \\ " \n end'}
    argv = ["/bin/sh", "-c", 'printf "%s" "$OCCLUM_TEST"']
    for cmd in ([started.path / "run" / "occlum-exec"], PYTHON_CLIENT):
        proc = subprocess.run(
            [*cmd, *argv], cwd=started.path, env=env, capture_output=True, timeout=60, check=False
        )
        assert (proc.returncode, proc.stdout) == (0, env[b"OCCLUM_TEST"]), (cmd, proc)


def test_the_native_client_reports_the_programs_own_words(started: Instance) -> None:
    """Spot checks of what the comparison above compares."""
    client = started.path / "run" / "occlum-exec"
    code, out, err = _call([client, "/bin/sh", "-c", 'echo "[$OCCLUM_TEST]"; exit 7'], started.path)
    assert (code, out, err) == (7, b"[from the host]\n", b"")
    code, out, err = _call([client, "/bin/sh", "-c", "kill -SEGV $$"], started.path)
    assert code == 128 + signal.SIGSEGV
    assert err == b"occlum: /bin/sh (pid N) killed by SIGSEGV\n"
    code, _, err = _call([client, "/bin/nope"], started.path)
    assert (code, err) == (127, b"occlum: cannot start /bin/nope: No such file or directory\n")


def _interrupt(cmd: Sequence[str | Path], cwd: Path) -> tuple[int, bytes]:
    proc = subprocess.Popen(
        [*cmd, "/bin/sh", "-c", "echo up; sleep 100 | cat"], cwd=cwd, env=ENV,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"up\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    return proc.returncode, err


def test_ctrl_c_on_the_native_client_reaches_the_whole_pipeline(started: Instance) -> None:
    native = _interrupt([started.path / "run" / "occlum-exec"], started.path)
    assert native == (128 + signal.SIGINT, b"")
    assert native == _interrupt(PYTHON_CLIENT, started.path)
    code, out, _ = _call([OCCLUM, "ps"], started.path)
    assert code == 0 and b"sleep" not in out, out


def _under_a_terminal(cmd: Sequence[str | Path], cwd: Path) -> tuple[int, bytes]:
    """Run ``cmd`` with a terminal as its stdin, stdout and stderr; its exit code and what
    it wrote there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*cmd, "/bin/sh", "-c", "test -t 0 && test -t 1 && echo tty-$((6*7)); read x; echo got-$x; exit 4"],
        cwd=cwd, env=ENV, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"tty-42" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                seen += os.read(master, 4096)
        os.write(master, b"typed\r")
        code = proc.wait(timeout=30)
        while select.select([master], [], [], 0.2)[0]:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, seen


def test_both_clients_give_the_program_a_terminal(started: Instance) -> None:
    for cmd in ([started.path / "run" / "occlum-exec"], PYTHON_CLIENT):
        code, seen = _under_a_terminal(cmd, started.path)
        assert code == 4, (cmd, seen)
        assert b"tty-42" in seen and b"got-typed" in seen, (cmd, seen)


def test_a_program_starts_with_the_limits_streams_and_signals_of_occlum_run(
    started: Instance,
) -> None:
    """The spawner starts a program with posix_spawn, whose child cannot set resource limits:
    the supervisor sets them at its execve. Same limits as under `occlum run` (user_space_size
    300MB, default_stack_size 4MB by default), the three streams only, no signal blocked or
    caught, none ignored but glibc's two internal ones (32 and 33, which glibc's posix_spawn
    leaves ignored and which no C library lets a program see)."""
    script = "ulimit -v; ulimit -s; for f in /proc/$$/fd/*; do echo ${f##*/}; done"
    for cmd in ([OCCLUM, "run"], [started.path / "run" / "occlum-exec"]):
        if cmd[-1] == "run":
            _call([OCCLUM, "stop", "-t", "1"], started.path)
        code, out, err = _call([*cmd, "/bin/sh", "-c", script], started.path)
        if cmd[-1] == "run":
            assert _call([OCCLUM, "start"], started.path)[0] == 0
        # the last descriptor is the directory the shell's glob reads
        assert (code, out.split()) == (0, [b"307200", b"4096", b"0", b"1", b"2", b"3"]), (cmd, err)
    code, out, _ = _call(
        [started.path / "run" / "occlum-exec", "/bin/cat", "/proc/self/status"], started.path
    )
    fields = dict(line.split(":\t", 1) for line in out.decode().splitlines() if ":\t" in line)
    assert (fields["SigBlk"], fields["SigCgt"]) == ("0" * 16, "0" * 16), fields
    assert int(fields["SigIgn"], 16) & ~((1 << 31) | (1 << 32)) == 0, fields


def test_occlum_start_puts_the_native_client_in_run(started: Instance) -> None:
    client = started.path / "run" / "occlum-exec"
    assert client.is_file() and os.access(client, os.X_OK)
    # it runs from anywhere given the instance
    code, out, _ = _call(
        [client, "--instance-dir", str(started.path), "/bin/sh", "-c", "echo in"], Path("/")
    )
    assert (code, out) == (0, b"in\n")


def test_errors_before_anything_runs_are_one_line_from_both_clients(
    instance: Instance, tmp_path: Path
) -> None:
    _call([OCCLUM, "stop", "-t", "1"], instance.path)
    assert _call([OCCLUM, "start"], instance.path)[0] == 0
    native_client = tmp_path / "occlum-exec"
    shutil.copy(instance.path / "run" / "occlum-exec", native_client)
    assert _call([OCCLUM, "stop", "-t", "1"], instance.path)[0] == 0
    native = _call([native_client, "/bin/sh"], instance.path)
    assert native == _call([*PYTHON_CLIENT, "/bin/sh"], instance.path)
    assert native == (
        1,
        b"",
        b"occlum: error: the instance is not started (occlum start starts it)\n",
    )
    elsewhere = _call([native_client, "/bin/sh"], tmp_path)
    assert elsewhere == _call([*PYTHON_CLIENT, "/bin/sh"], tmp_path)
    assert elsewhere[0] == 1 and b"not an Occlum instance directory: " in elsewhere[2]
    assert elsewhere[2].count(b"\n") == 1
    assert _call([native_client], tmp_path)[0] == 2  # no PROGRAM: a usage error
    # a server killed outright leaves its socket: the client says the server is gone
    assert _call([OCCLUM, "start"], instance.path)[0] == 0
    try:
        server = int((instance.path / "run" / "server.pid").read_text())
        os.kill(server, signal.SIGKILL)
        time.sleep(0.5)
        native = _call([native_client, "/bin/sh"], instance.path)
        assert native == _call([*PYTHON_CLIENT, "/bin/sh"], instance.path)
        assert native[0] == 1 and b"server is gone" in native[2], native
        assert native[2].count(b"\n") == 1
    finally:
        _call([OCCLUM, "stop", "-t", "1"], instance.path)
