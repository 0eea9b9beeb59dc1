"""``occlum gdb``: a program of the instance under the host's GDB, as Occlum's ``occlum gdb``.

This process boots the LibOS as ``occlum run`` does, with ``RunSpec.debug`` set: every exec of
the program's tree tells the kernel the auxiliary vector its program was given, and the first
program waits in the loader stub, right before it jumps to its entry, reading a pipe (the
*gate*); the supervisor writes its host pid to another (:mod:`occlum.loader.debug`). A forked
*debugger* process copies the program's files out of the verified image into a private
sysroot (:mod:`occlum.instance.sysroot`) meanwhile, waits for the program to reach the gate,
runs GDB attached to it (``set sysroot``, ``file``, ``attach``) and opens the gate once GDB
has attached; GDB's own shared-library support reads the dynamic loader's link map from
there on. When GDB exits it kills the program if it still has it, as GDB kills a program it
ran (a program GDB never attached to is killed too); the exit status is GDB's. ``--pid`` attaches GDB to a program of a started instance.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from occlum.errors import UserError
from occlum.instance.layout import Instance
from occlum.instance.runspec import to_run_spec

if TYPE_CHECKING:
    from occlum.kernel.spec import RunSpec

CONTEXT = {"help_option_names": ["-h", "--help"]}
GATE_TIMEOUT = 30.0  # seconds from the supervisor's word to the program's wait at the gate
NOT_DEBUGGABLE = (
    "the instance is not debuggable (metadata.debuggable is false in Occlum.json): "
    "occlum gdb refuses it"
)


def _gdb_path() -> str:
    found = shutil.which("gdb")
    if found is None:
        raise UserError("occlum gdb needs the host's gdb (apt-get install gdb)")
    return found


# GDB detaches from the processes it attached to when it exits, and kills those it ran: the
# program `occlum gdb` started (and the children GDB followed into) count as run by it
KILL_AT_EXIT = """python
def _occlum_gdb_exiting(_event):
    for inferior in gdb.inferiors():
        if inferior.pid:
            gdb.execute(f"inferior {inferior.num}", to_string=True)
            gdb.execute("kill", to_string=True)
gdb.events.gdb_exiting.connect(_occlum_gdb_exiting)
end"""


def gdb_script(sysroot: Path, program: Path, host_pid: int, kill_at_exit: bool = False) -> str:
    """The commands that hand GDB the program: its files, then the process."""
    return "\n".join(
        (
            "set debuginfod enabled off",
            # the kernel ran the loader stub: /proc/PID/exe names it, not the program
            "set exec-file-mismatch off",
            f"set sysroot {sysroot}",
            f"file {program}",
            f"attach {host_pid}",
            *((KILL_AT_EXIT,) if kill_at_exit else ()),
            "",
        )
    )


def _status(host_pid: int) -> dict[str, str] | None:
    """The fields of ``/proc/PID/status`` (None: the process is gone)."""
    try:
        with open(f"/proc/{host_pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return None
    return {k: v.strip() for k, v in fields.items()}


def _waiting_at_gate(host_pid: int) -> bool | None:
    """Whether the program waits in the stub's read of the gate (None: it is gone)."""
    try:
        with open(f"/proc/{host_pid}/syscall") as f:
            call = f.read().split()
    except OSError:
        return None
    return bool(call) and call[0] == "0"


def _attached(host_pid: int) -> bool | None:
    """Whether a tracer has attached and taken its SIGSTOP (None: the process is gone)."""
    status = _status(host_pid)
    if status is None or status.get("State", "Z").startswith(("Z", "X")):
        return None
    if status.get("TracerPid", "0") == "0":
        return False
    pending = int(status.get("SigPnd", "0"), 16) | int(status.get("ShdPnd", "0"), 16)
    return not pending & (1 << (signal.SIGSTOP - 1))


def _read_pid(fd: int) -> int | None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 64)
        if not chunk:
            return None
        data += chunk
    return int(data)


def _debugger(
    pid_r: int,
    gate_w: int,
    image: str,
    root_hash: str,
    program: str,
    gdb: str,
    gdb_args: list[str],
    key: bytes | None,
) -> int:
    """The debugger process: the sysroot, the waiting program, GDB; GDB's exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is GDB's
    from occlum.instance.sysroot import build_sysroot

    with tempfile.TemporaryDirectory(prefix="occlum-gdb-") as tmp:
        sysroot = Path(tmp) / "root"
        failed: UserError | None = None
        try:  # while the LibOS boots
            copy = build_sysroot(image, root_hash, program, sysroot, key)
        except UserError as exc:
            failed = exc
        host_pid = _read_pid(pid_r)
        os.close(pid_r)
        if host_pid is None:  # the program did not start: the supervisor said why
            return 1
        pidfd = os.pidfd_open(host_pid)
        try:
            if failed is not None:
                print(f"occlum gdb: {failed}", file=sys.stderr)
                return 1
            opened = [False]
            return _attach(gdb, gdb_args, Path(tmp), sysroot, copy, host_pid, gate_w, opened)
        finally:
            if not opened[0]:  # GDB never had it: it must not run undebugged
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)


def _attach(
    gdb: str,
    gdb_args: list[str],
    tmp: Path,
    sysroot: Path,
    copy: Path,
    host_pid: int,
    gate_w: int,
    opened: list[bool],
) -> int:
    """GDB attached to the program waiting at the gate; the gate opened once it has (then
    ``opened[0]`` is true)."""
    deadline = time.monotonic() + GATE_TIMEOUT
    while not (state := _waiting_at_gate(host_pid)) and time.monotonic() < deadline:
        if state is None:
            return 1
        time.sleep(0.002)
    if not state:
        print(f"occlum gdb: {copy.name} did not reach its entry", file=sys.stderr)
        return 1
    child = _start_gdb(gdb, gdb_args, tmp, sysroot, copy, host_pid, kill_at_exit=True)
    # attached on two looks in a row: the kernel links the tracer just before it queues the
    # SIGSTOP, and a byte read before that stop would let the program run past the gate
    seen = 0
    while gate_w >= 0:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            return _exit_code(status)
        seen = seen + 1 if _attached(host_pid) is not False else 0  # attached, or gone
        if seen >= 2:
            os.write(gate_w, b"g")
            os.close(gate_w)
            gate_w = -1
            opened[0] = True
        else:
            time.sleep(0.002)
    _, status = os.waitpid(child, 0)
    return _exit_code(status)


def _start_gdb(
    gdb: str,
    gdb_args: list[str],
    tmp: Path,
    sysroot: Path,
    copy: Path,
    host_pid: int,
    kill_at_exit: bool = False,
) -> int:
    """GDB, started with the script that attaches it; its pid."""
    script = tmp / "attach.gdb"
    script.write_text(gdb_script(sysroot, copy, host_pid, kill_at_exit))
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            os.execv(gdb, [gdb, "-q", "-x", str(script), *gdb_args])
        finally:
            os._exit(127)
    return child


def _debug_started(
    inst: Instance, pid: int, gdb: str, gdb_args: list[str], key_path: Path | None
) -> int:
    """``--pid``: GDB attached to a process of the started instance; it goes on running
    when GDB detaches."""
    from occlum.instance.client import request
    from occlum.instance.sysroot import build_sysroot

    answer = request(inst.run_dir, {"op": "host_pid", "pid": pid})
    if "error" in answer:
        raise UserError(str(answer["error"]))
    host_pid = int(answer["host_pid"])
    exe = str(answer["exe"]).removesuffix(" (deleted)")
    spec = to_run_spec(inst, (), os.environ, service=True)
    assert spec.root_image is not None and spec.root_hash is not None
    key = _image_key(key_path)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is GDB's
    try:
        with tempfile.TemporaryDirectory(prefix="occlum-gdb-") as tmp:
            sysroot = Path(tmp) / "root"
            copy = build_sysroot(spec.root_image, spec.root_hash, exe, sysroot, key)
            child = _start_gdb(gdb, gdb_args, Path(tmp), sysroot, copy, host_pid)
            _, status = os.waitpid(child, 0)
            return _exit_code(status)
    finally:
        signal.signal(signal.SIGINT, old)


def _image_key(path: Path | None) -> bytes | None:
    """The image key of ``--image-key`` (the sysroot's files are read from the image)."""
    if path is None:
        return None
    from occlum.enclave.keys import load_image_key

    return load_image_key(path)


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1


@click.command(
    "gdb",
    context_settings={**CONTEXT, "ignore_unknown_options": True, "allow_interspersed_args": False},
    short_help="Debug a program of the instance with GDB.",
)
@click.option(
    "--ex", "commands", multiple=True, metavar="CMD",
    help="A GDB command run once GDB has attached (as gdb -ex); repeatable.",
)  # fmt: skip
@click.option("--batch", is_flag=True, help="Exit once the commands have run (as gdb -batch).")
@click.option(
    "--image-key", metavar="FILE",
    help="The key of an encrypted image (as for occlum run); relative to the instance directory.",
)  # fmt: skip
@click.option(
    "--pid", type=int, default=None,
    help="Attach to this process of the started instance (a pid as occlum ps shows it).",
)  # fmt: skip
@click.argument("program", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def gdb(
    ctx: click.Context,
    commands: tuple[str, ...],
    batch: bool,
    image_key: str | None,
    pid: int | None,
    program: str | None,
    args: tuple[str, ...],
) -> None:
    """Run PROGRAM with ARGS in the built instance, as occlum run does, under the host's GDB.

    The program stops before its first instruction (in the LibOS's loader stub) and GDB
    attaches to it with its symbols and its shared libraries, copied from the verified image:
    set breakpoints, then continue. With --pid, GDB attaches to a process of the started
    instance instead (it goes on when GDB detaches). The instance must be debuggable
    (metadata.debuggable in Occlum.json, the default). The exit status is GDB's.

    \b
    Example:
      occlum gdb /bin/hello_world
      occlum gdb --batch --ex 'break main' --ex continue --ex bt --ex continue /bin/hello
      occlum gdb --pid 3
    """
    inst = Instance.at(getattr(ctx.find_root().obj, "instance_dir", "."))
    inst.require()
    if (pid is None) == (program is None):
        raise UserError("occlum gdb takes a PROGRAM to run, or --pid N of a started instance")
    gdb_args = [*(["-batch"] if batch else []), *(a for c in commands for a in ("-ex", c))]
    key_path = None if image_key is None else inst.path / image_key
    if not inst.load_built_config().config.metadata.debuggable:
        raise UserError(NOT_DEBUGGABLE)
    if pid is not None:
        from occlum.instance.wire import lock_holder

        if lock_holder(inst.run_dir) is None:
            raise UserError("--pid needs a started instance (occlum start)")
        ctx.exit(_debug_started(inst, pid, _gdb_path(), gdb_args, key_path))
    assert program is not None
    from occlum.instance.wire import refuse_if_started

    refuse_if_started(inst.run_dir)
    from occlum.instance.fusemount import refuse_if_mounted

    refuse_if_mounted(inst)
    spec = to_run_spec(inst, (program, *args), os.environ, image_key=key_path)
    if spec.enclave is None or not spec.enclave.debuggable:
        raise UserError(NOT_DEBUGGABLE)
    if spec.root_image is None or spec.root_hash is None:
        raise UserError("occlum gdb needs a built root image (run `occlum build`)")
    gdb_bin = _gdb_path()
    key = _image_key(key_path)
    from occlum.kernel.spec import DebugStop

    pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
    gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
    debugger = os.fork()
    if debugger == 0:
        os.close(pid_w)
        os.close(gate_r)
        code = 1
        try:
            code = _debugger(
                pid_r, gate_w, spec.root_image, spec.root_hash, program, gdb_bin, gdb_args, key
            )
        finally:
            os._exit(code)
    os.close(pid_r)
    os.close(gate_w)
    code = 1
    try:
        code = _run(inst, replace(spec, debug=DebugStop(pid_w, gate_r)))
    finally:
        os.close(pid_w)
        os.close(gate_r)
        _, status = os.waitpid(debugger, 0)
    ctx.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else code)


def _run(inst: Instance, spec: RunSpec) -> int:
    from occlum.boot import new_libos
    from occlum.kernel import stages

    libos = new_libos(spec)
    libos.foreground = False  # the terminal is GDB's (the LibOS ignores SIGINT while it runs)
    with inst.running():
        return int(stages.run(libos))
