"""stdin, stdout, stderr and a controlling terminal pass through to the program."""

from __future__ import annotations

import fcntl
import os
import pty
import select
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


@pytest.fixture(scope="module")
def shell_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    inst = Instance.new(tmp_path_factory.mktemp("term") / "instance")
    inst.configure()
    libos.place_with_dependencies(
        inst.image,
        {
            "/bin/sh": Path("/bin/dash"),
            "/bin/cat": Path("/bin/cat"),
            "/bin/tty": Path("/usr/bin/tty"),
            "/bin/ls": Path("/bin/ls"),
        },
    )
    inst.build()
    yield inst


def _take_terminal() -> None:
    """A new session whose controlling terminal is the pty on stdin, as a login shell has."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _run_on_pty(inst: Instance, argv: list[str], typed: bytes) -> tuple[int, bytes]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [OCCLUM, "run", *argv], cwd=inst.path, stdin=slave, stdout=slave, stderr=slave,
        preexec_fn=_take_terminal, env={**os.environ, "OCCLUM_LOG_LEVEL": "error"},
    )  # fmt: skip
    os.close(slave)
    out = b""
    sent = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not sent and b"ready" in out:
            os.write(master, typed)
            sent = True
        if proc.poll() is not None and not ready:
            break
    code = proc.wait(timeout=10)
    os.close(master)
    return code, out


def test_terminal_passes_through(shell_instance: Instance) -> None:
    script = 'test -t 0 && test -t 1 && echo "on a tty"; echo ready; read line; echo "got [$line]"; echo to-tty > /dev/tty'
    code, out = _run_on_pty(shell_instance, ["/bin/sh", "-c", script], b"typed text\n")
    text = out.decode(errors="replace").replace("\r\n", "\n")
    assert code == 0, text
    assert "on a tty" in text
    assert "got [typed text]" in text
    assert "to-tty" in text


def test_ttyname_finds_the_terminal_of_occlum_run(shell_instance: Instance) -> None:
    """ttyname(0) inside names the host terminal occlum run was started on, as natively: its
    /proc/self/fd/0 name stats as that terminal (the instance's devpts has no such slave)."""
    master, slave = pty.openpty()
    name = os.ttyname(slave)
    script = "tty; ls /dev/pts; echo written > $(tty); echo ready"
    proc = subprocess.Popen(
        [OCCLUM, "run", "/bin/sh", "-c", script], cwd=shell_instance.path, stdin=slave,
        stdout=slave, stderr=slave, env={**os.environ, "OCCLUM_LOG_LEVEL": "error"},
    )  # fmt: skip
    os.close(slave)
    out = b""
    while b"ready" not in out:
        ready, _, _ = select.select([master], [], [], 60)
        assert ready, out
        try:
            out += os.read(master, 4096)
        except OSError:
            break
    assert proc.wait(timeout=30) == 0, out
    os.close(master)
    lines = out.decode(errors="replace").replace("\r\n", "\n").splitlines()
    assert lines[0] == name, lines
    assert os.path.basename(name) in lines[1].split(), lines
    assert "written" in lines, lines


def test_pipes_pass_through(shell_instance: Instance) -> None:
    res = shell_instance.run(["/bin/cat"], stdin="line one\nline two\n")
    assert res.code == 0
    assert res.stdout == "line one\nline two\n"


class Pty:
    """`occlum run argv` on a pseudo-terminal that is its controlling terminal, typed at."""

    def __init__(self, inst: Instance, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [OCCLUM, "run", *argv], cwd=inst.path, stdin=slave, stdout=slave, stderr=slave,
            preexec_fn=_take_terminal,
            env={**os.environ, "OCCLUM_LOG_LEVEL": "error"},
        )  # fmt: skip
        os.close(slave)
        self.out = b""

    def expect(self, text: bytes, timeout: float = 20) -> None:
        """Read until ``text`` appears in what the terminal showed since the last expect."""
        deadline = time.monotonic() + timeout
        while text not in self.out:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"no {text!r} on the terminal; it showed:\n{self.out!r}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"the terminal closed before {text!r}:\n{self.out!r}")
            self.out += chunk
        self.out = self.out[self.out.index(text) + len(text) :]

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> int:
        code = self.proc.wait(timeout=20)
        os.close(self.master)
        return code


@pytest.fixture(scope="module")
def bash_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    inst = Instance.new(tmp_path_factory.mktemp("jobs") / "instance")
    inst.configure()
    libos.place_with_dependencies(
        inst.image, {"/bin/bash": Path("/bin/bash"), "/bin/sleep": Path("/bin/sleep")}
    )
    inst.build()
    yield inst


def test_interactive_bash_job_control(bash_instance: Instance) -> None:
    """Ctrl-Z stops a job, jobs lists it, bg and fg resume it, Ctrl-C interrupts it, and the
    shell's exit status is `occlum run`'s."""
    term = Pty(bash_instance, ["/bin/bash", "--norc", "--noprofile", "-i"])
    try:
        term.expect(b"# ")  # the prompt: the shell has taken the terminal
        term.type(b"sleep 100\n")
        term.expect(b"sleep 100\r\n")
        time.sleep(0.5)  # the job runs in the foreground
        term.type(b"\x1a")  # Ctrl-Z
        term.expect(b"Stopped")
        term.type(b"jobs\n")
        term.expect(b"[1]+  Stopped                 sleep 100")
        term.expect(b"# ")
        term.type(b"bg\n")
        term.expect(b"[1]+ sleep 100 &")
        term.type(b"jobs\n")
        term.expect(b"Running")
        term.type(b"fg\n")
        term.expect(b"sleep 100\r\n")
        time.sleep(0.5)
        term.type(b"\x03")  # Ctrl-C
        term.type(b"echo status $?\n")
        term.expect(b"status 130")
        term.type(b"exit 3\n")
    finally:
        code = term.close()
    assert code == 3


# Types its argument and a newline into its standard input's terminal, as if the user had.
_PUSHER = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
int main(int argc, char **argv)
{
    for (const char *c = argv[1]; ; c++) {
        const char ch = *c ? *c : '\n';
        if (ioctl(0, TIOCSTI, &ch) < 0) {
            printf("typing refused: %s\n", strerror(errno));
            return 1;
        }
        if (!*c)
            break;
    }
    printf("typed\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def pusher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Instance, Path]]:
    base = tmp_path_factory.mktemp("tiocsti")
    src = base / "pusher.c"
    src.write_text(_PUSHER)
    prog = libos.compile_c(src, base / "pusher", libos.GLIBC_STATIC)
    inst = Instance.new(base / "instance")
    inst.configure()
    libos.place(inst.image, prog, "/bin/pusher")
    inst.build()
    yield inst, prog


def _shell_runs(command: str, tmp: Path) -> str:
    """An interactive bash on a pseudo-terminal of its own runs ``command``, then whatever is
    waiting in the terminal's input (a user's shell does so once the command is over)."""
    pid, master = pty.fork()
    if pid == 0:
        os.execve(
            "/bin/bash", ["bash", "--norc", "--noprofile", "-i"],
            {**os.environ, "PS1": "$ ", "OCCLUM_LOG_LEVEL": "error", "HISTFILE": "/dev/null"},
        )  # fmt: skip
    out = b""

    def until(text: bytes, timeout: float = 60) -> None:
        nonlocal out
        deadline = time.monotonic() + timeout
        while text not in out:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {text!r} on the terminal:\n{out!r}")
            try:
                chunk = os.read(master, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"the terminal closed before {text!r}:\n{out!r}")
            out += chunk

    try:
        until(b"$ ")
        os.write(master, f"cd {tmp} && {command}; echo $((6*7))-over\n".encode())
        until(b"42-over")
        # what was typed into the terminal is read by the shell now; one more command after it
        os.write(master, b"echo $((7*7))-after\n")
        until(b"49-after")
        os.write(master, b"exit\n")
    finally:
        os.close(master)
        os.waitpid(pid, 0)
    return out.decode(errors="replace")


def test_program_cannot_type_into_the_users_shell(
    pusher: tuple[Instance, Path], tmp_path: Path
) -> None:
    """TIOCSTI on the host terminal `occlum run` was started from would leave commands for
    the user's shell to run after occlum exits; the LibOS refuses it."""
    inst, prog = pusher
    native_mark = tmp_path / "PWNED-native"
    out = _shell_runs(f"{prog} 'touch {native_mark}'", tmp_path)
    if "typing refused" in out:
        pytest.skip("TIOCSTI is refused natively here (dev.tty.legacy_tiocsti=0)")
    assert native_mark.exists(), f"the native control typed nothing:\n{out}"

    mark = tmp_path / "PWNED"
    out = _shell_runs(f"cd {inst.path} && {OCCLUM} run /bin/pusher 'touch {mark}'", tmp_path)
    assert not mark.exists(), f"the shell ran what the program typed:\n{out}"
    assert "typing refused: Input/output error" in out, out
