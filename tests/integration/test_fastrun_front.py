"""The native front of ``occlum`` (``cli/native/front.c``, installed by scripts/setup.sh):
``occlum run`` through a warm zygote and ``occlum exec`` start no Python, and every command
line gives what the Python console script gives (output, errors, exit status, signals).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

FRONT = str(Path(sys.executable).parent / "occlum")
# what the console script runs, without the front
PYTHON_CLI = [
    sys.executable,
    "-c",
    "import sys; from occlum.cli.entry import main; sys.exit(main())",
]


def _is_front(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    if not _is_front(FRONT):
        pytest.fail(f"{FRONT} is not the native front: run scripts/setup.sh")
    inst = Instance.new(tmp_path_factory.mktemp("front") / "instance")
    inst.configure()
    libos.place_with_dependencies(inst.image, {"/bin/sh": Path("/bin/dash")})
    inst.build()
    yield inst


@pytest.fixture
def zdir() -> Iterator[Path]:
    with libos.zygote_runtime_dir("of") as d:
        yield d


def _env(zdir: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(zdir), "OCCLUM_LOG_LEVEL": "error"}
    env.pop("OCCLUM_NO_ZYGOTE", None)
    return {**env, **extra}


def _run(
    cmd: list[str], inst: Instance, env: dict[str, str], cwd: Path | None = None
) -> tuple[int, bytes, bytes]:
    res = subprocess.run(
        cmd, cwd=cwd or inst.path, env=env, stdin=subprocess.DEVNULL, capture_output=True,
        timeout=120, check=False,
    )  # fmt: skip
    return res.returncode, res.stdout, res.stderr


def test_the_client_of_a_warm_run_is_not_python(inst: Instance, zdir: Path) -> None:
    env = _env(zdir)
    assert _run([FRONT, "run", "/bin/sh", "-c", "true"], inst, env)[0] == 0  # starts the zygote
    proc = subprocess.Popen(
        [FRONT, "run", "/bin/sh", "-c", "echo up; read x"], cwd=inst.path, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"up\n"
        exe = os.readlink(f"/proc/{proc.pid}/exe")
    finally:
        _out, err = proc.communicate(b"\n", timeout=60)
    assert proc.returncode == 0, err
    assert exe == os.path.realpath(FRONT), f"the client runs {exe}"


COMMAND_LINES = [
    ["run", "/bin/sh", "-c", "echo out; echo err >&2; exit 7"],
    ["run", "/bin/nope"],
    ["run", "/bin/sh", "-c", "kill -TERM $$"],
    ["run"],
    ["run", "--no-such-option", "/bin/sh"],
    ["--instance-dir", "/nonexistent", "run", "/bin/sh", "-c", "true"],
    ["--instance-dir=.", "run", "/bin/sh", "-c", "echo $0 $1", "a b"],
    ["exec", "/bin/sh", "-c", "true"],  # not started
    ["exec"],
    ["--version"],
]


@pytest.mark.parametrize("args", COMMAND_LINES, ids=lambda a: " ".join(a))
def test_the_front_gives_what_the_console_script_gives(
    inst: Instance, zdir: Path, args: list[str]
) -> None:
    env = _env(zdir)
    _run([FRONT, "run", "/bin/sh", "-c", "true"], inst, env)  # a warm zygote
    front = _run([FRONT, *args], inst, env)
    script = _run([*PYTHON_CLI, *args], inst, env)
    assert front == script


def test_a_run_the_zygote_declines_takes_the_direct_path(inst: Instance, zdir: Path) -> None:
    # a variable the interpreter reads at start makes the zygote decline: the front hands the
    # run to Python, which runs it directly
    _run([FRONT, "run", "/bin/sh", "-c", "true"], inst, _env(zdir))
    env = _env(zdir, PYTHONWARNINGS="default")
    res = _run([FRONT, "run", "/bin/sh", "-c", "echo direct; exit 3"], inst, env)
    assert res == (3, b"direct\n", b"")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_to_the_front_is_relayed_as_by_the_console_script(
    inst: Instance, zdir: Path, sig: int
) -> None:
    # SIGTERM reaches the program (its trap runs); SIGUSR1 ends the LibOS's process, as it
    # ends `occlum run` itself on the direct path, and the client dies of it too
    env = _env(zdir)
    _run([FRONT, "run", "/bin/sh", "-c", "true"], inst, env)
    script = "trap 'echo got it; exit 9' TERM USR1; echo up; while :; do :; done"
    outcomes = []
    for cmd in ([FRONT], PYTHON_CLI):
        proc = subprocess.Popen(
            [*cmd, "run", "/bin/sh", "-c", script], cwd=inst.path, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"up\n"
        if cmd == [FRONT]:
            assert os.readlink(f"/proc/{proc.pid}/exe") == os.path.realpath(FRONT)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        outcomes.append((proc.returncode, out, err))
    assert outcomes[0] == outcomes[1]
    if sig == signal.SIGTERM:
        assert outcomes[0] == (9, b"got it\n", b"")
    else:
        assert outcomes[0][0] == -sig


def test_every_path_refuses_a_run_while_occlum_mount_serves_a_volume(
    inst: Instance, zdir: Path
) -> None:
    # what `occlum mount` leaves in run/mounts while it serves (its pid, target, mountpoint);
    # the direct path of a plain run (a terminal, OCCLUM_NO_ZYGOTE=1) refuses it as well
    server = subprocess.Popen(["sleep", "60"])
    marker = inst.path / "run" / "mounts" / str(server.pid)
    marker.parent.mkdir(exist_ok=True)
    marker.write_text("/\t/mnt/served\n")
    try:
        program = ["/bin/sh", "-c", "echo ran"]
        outcomes = {
            name: _run([FRONT, *args, *program], inst, _env(zdir, **env))
            for name, args, env in (
                ("zygote", ["run"], {}),
                ("direct", ["run"], {"OCCLUM_NO_ZYGOTE": "1"}),
                ("full command line", ["run", "--strace"], {"OCCLUM_NO_ZYGOTE": "1"}),
            )
        }
    finally:
        server.kill()
        server.wait()
        marker.unlink()
    line = (
        f"occlum: error: the instance's SEFS volume / is mounted on the host at /mnt/served "
        f"(occlum mount, pid {server.pid}): occlum umount /mnt/served first\n"
    ).encode()
    assert outcomes == dict.fromkeys(outcomes, (1, b"", line))


def test_the_zygote_imports_nothing_from_the_callers_directory(
    inst: Instance, zdir: Path, tmp_path: Path
) -> None:
    # the zygote starts in the caller's working directory; a file there named like a module
    # it imports (here one of the standard library) must not be what it imports
    (tmp_path / "selectors.py").write_text("raise SystemExit('the caller directory')\n")
    res = _run(
        [FRONT, "--instance-dir", str(inst.path), "run", "/bin/sh", "-c", "echo ran"],
        inst, _env(zdir), cwd=tmp_path,
    )  # fmt: skip
    assert res == (0, b"ran\n", b"")
    pids = list((zdir / "occlum").glob("*.pid"))
    assert len(pids) == 1, "no zygote started"
    os.kill(int(pids[0].read_text()), 0)


@pytest.mark.parametrize("dir_args", [[], ["--instance-dir="], ["--instance-dir", "."]])
def test_exec_becomes_the_native_client(inst: Instance, zdir: Path, dir_args: list[str]) -> None:
    # an empty --instance-dir is the working directory, as os.path.join makes it
    env = _env(zdir)
    assert _run([FRONT, "start"], inst, env)[0] == 0
    try:
        proc = subprocess.Popen(
            [FRONT, *dir_args, "exec", "/bin/sh", "-c", "echo up; read x; exit 4"],
            cwd=inst.path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"up\n"
            exe = os.readlink(f"/proc/{proc.pid}/exe")
        finally:
            _out, err = proc.communicate(b"\n", timeout=60)
        assert (proc.returncode, err) == (4, b"")
        assert exe == os.path.realpath(inst.path / "run" / "occlum-exec")
        if shutil.which("strace"):  # and no Python on the way there
            log = inst.path / "run" / "execs.log"
            res = _run(
                ["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(log),
                 FRONT, *dir_args, "exec", "/bin/sh", "-c", "exit 5"],
                inst, env,
            )  # fmt: skip
            assert res[0] == 5, res
            programs = [line.split('"')[1] for line in log.read_text().splitlines()]
            assert [os.path.basename(p) for p in programs] == ["occlum", "occlum-exec"]
    finally:
        _run([FRONT, "stop"], inst, env)
