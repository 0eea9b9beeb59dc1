"""``occlum-container``: the entrypoint of an image written by ``occlum package --oci``.

``podman run IMAGE [PROGRAM ARGS...]`` runs this as the container's main process (pid 1) with
the image's Cmd, or the arguments given after the image name, as the program. It

1. checks, each in one line, what the LibOS needs of the container before starting anything:
   the platform directory mounted from the host (an image carries no key), namespaces, seccomp
   user notification through the container's own filter, and, as warnings (the instance then
   runs with that one protection fewer, said once), Landlock and the cgroups that enforce
   ``max_num_of_threads`` and ``user_space_size``;
2. starts the instance (``occlum start``) and runs the program in it (``occlum exec``) with the
   container's standard streams: its output is the container's log, its exit status the
   container's; ``podman exec CONTAINER occlum exec ...`` runs more programs in the same
   instance;
3. on SIGTERM or SIGINT (``podman stop``, ``kubectl delete``) stops the instance (``occlum
   stop``: SIGTERM to its programs, SIGKILL after ``OCCLUM_STOP_TIMEOUT`` seconds, default 8,
   below the engines' 10, then the file systems written back), and exits with the program's
   status; when the program ends by itself the instance is stopped the same way.

``OCCLUM_CONTAINER_MODE=run`` takes the short path instead: ``occlum run`` of the program as
the container's main process (no server, no ``podman exec`` into it; SIGTERM goes to the
program). Only the standard library and the LibOS's platform layer are imported: the
commands are the ``occlum`` of the image.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable

INSTANCE_DIR = "/occlum_instance"
PLATFORM_DIR = "/var/lib/occlum/platform"
OCCLUM = "/usr/bin/occlum"
DOCS = "docs/deploy.md"


class Refused(Exception):
    """A privilege the LibOS cannot run without: the message is the one line to print."""


def _say(kind: str, text: str) -> None:
    print(f"occlum-container: {kind}: {text}", file=sys.stderr, flush=True)


# --- what the container grants ----------------------------------------------------------------


def _is_mount_point(path: str) -> bool:
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def check_platform() -> None:
    """The platform key and counters come from the host: the directory must be a mount."""
    if os.environ.get("OCCLUM_PLATFORM", "") == "ephemeral":
        _say(
            "warning",
            "OCCLUM_PLATFORM=ephemeral: a platform key of this container's own; what it seals "
            "(the SEFS volumes) cannot be opened by any other container",
        )
        return
    if not _is_mount_point(PLATFORM_DIR):
        raise Refused(
            f"no platform directory: mount the host's at {PLATFORM_DIR} (podman run -v "
            f"/var/lib/occlum/platform:{PLATFORM_DIR} ...); an image carries no key ({DOCS})"
        )


def _child(fn: Callable[[], int]) -> int:
    """Run ``fn`` in a forked child; its exit status (0: it returned)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _namespaces() -> int:
    from occlum.platform import native

    flags = (
        native.CLONE_NEWNS | native.CLONE_NEWPID | native.CLONE_NEWUTS | native.CLONE_NEWIPC
        | native.CLONE_NEWNET
    )  # fmt: skip
    if os.geteuid() != 0:
        flags |= native.CLONE_NEWUSER
    try:
        native.unshare(flags)
        native.mount(b"none", b"/", None, native.MS_REC | native.MS_PRIVATE, None)
        native.mount(b"occlum", b"/tmp", b"tmpfs", native.MS_NOSUID | native.MS_NODEV, b"size=1m")
    except OSError:
        return 3
    return 0


# classic BPF: load the call's number; the stub's call -> user notification, else allow
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x15, 0x06
_RET_ALLOW, _RET_USER_NOTIF = 0x7FFF0000, 0x7FC00000


def _notification() -> int:
    """The loader stub's private call reaches a listener of ours (exit 0), or the container's
    own filter answers it first (exit 4), or no listener can be made (exit 5)."""
    from occlum.platform import native
    from occlum.platform.seccomp import SECCOMP_FILTER_FLAG_NEW_LISTENER
    from occlum.platform.stub import STUB_NR

    prog = b"".join(
        struct.pack("<HBBI", *insn)
        for insn in (
            (_BPF_LD_W_ABS, 0, 0, 0),
            (_BPF_JEQ_K, 0, 1, STUB_NR),
            (_BPF_RET_K, 0, 0, _RET_USER_NOTIF),
            (_BPF_RET_K, 0, 0, _RET_ALLOW),
        )
    )
    try:
        native.prctl(native.PR_SET_NO_NEW_PRIVS, 1)
        listener = native.seccomp_set_filter(SECCOMP_FILTER_FLAG_NEW_LISTENER, prog)
    except OSError:
        return 5
    pid = os.fork()
    if pid == 0:
        with contextlib.suppress(OSError):
            native.syscall(STUB_NR)
        os._exit(0)
    import select

    # the call either waits for our answer (the listener is readable) or was answered by
    # the container's filter first (the child exits at once)
    ready: list[int] = []
    deadline = time.monotonic() + 10.0
    while not ready and time.monotonic() < deadline:
        ready, _, _ = select.select([listener], [], [], 0.05)
        if not ready and os.waitpid(pid, os.WNOHANG)[0] == pid:
            return 4
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return 0 if ready else 4


def check_privileges() -> list[str]:
    """Refused if the LibOS cannot run here; otherwise the warnings (one line each) for the
    protections this container does not allow."""
    if _child(_namespaces) != 0:
        raise Refused(
            "the container may not create namespaces: run it as a non-root user (--user "
            "1000:1000, the LibOS then makes a user namespace) with occlum's seccomp profile, "
            f"or as root with --cap-add SYS_ADMIN ({DOCS})"
        )
    code = _child(_notification)
    if code == 5:
        raise Refused(
            "the container's seccomp profile forbids seccomp filters with a listener "
            f"(SECCOMP_FILTER_FLAG_NEW_LISTENER): use occlum's profile ({DOCS})"
        )
    if code != 0:
        raise Refused(
            "the container's seccomp profile answers the LibOS's own system call before the "
            "LibOS sees it (a default profile refuses every call it does not name): run with "
            f"--security-opt seccomp=occlum-seccomp.json ({DOCS})"
        )
    from occlum.platform import limits, native

    warnings = []
    if native.landlock_abi() < native.LANDLOCK_SCOPE_ABI:
        warnings.append(
            "Landlock scopes are not available (kernel before 6.12, or the seccomp profile "
            "refuses landlock_create_ruleset): the programs' abstract Unix sockets and signals "
            "are confined by the instance's namespaces only"
        )
    probe = f"occlumprobe-{os.getpid()}-0"
    for kind, key, option, files in (
        (limits.PidsCgroup, "max_num_of_threads", "--pids-limit", _PIDS_MAX),
        (limits.MemoryCgroup, "user_space_size", "--memory", _MEMORY_MAX),
    ):
        group = kind.create(probe, 1 << 30)
        if group is not None:
            group.remove()  # the LibOS makes its own, as on a host
        elif not _container_limited(files):
            warnings.append(
                f"resource_limits.{key} is not enforced: the container's cgroups are "
                f"read-only and the container has no limit of its own (run it with {option})"
            )
    return warnings


# the container's own limits, as the engine set them (cgroup v2, then v1's hierarchies)
_PIDS_MAX = ("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max")
_MEMORY_MAX = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
_UNLIMITED = 1 << 60  # v1 says "no limit" with a number near 2**63


def _container_limited(files: tuple[str, ...]) -> bool:
    """Whether the engine limits the container as a whole (the LibOS's limit then holds for
    all it runs together, the LibOS included)."""
    for name in files:
        try:
            with open(name) as f:
                value = f.read().strip()
        except OSError:
            continue
        return value.isdigit() and int(value) < _UNLIMITED
    return False


# --- running the program ----------------------------------------------------------------------


def _occlum(*args: str) -> list[str]:
    return [OCCLUM, "--instance-dir", INSTANCE_DIR, *args]


def _serve(argv: list[str]) -> int:
    stop_timeout = os.environ.get("OCCLUM_STOP_TIMEOUT", "8")
    # the handler only notes the signal: the loop below starts `occlum stop` (a process
    # started from a signal handler could interrupt the start of another one)
    requested: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: requested.append(s))
    started = subprocess.run(_occlum("start"), stdout=subprocess.DEVNULL, check=False)
    if started.returncode != 0:
        return started.returncode
    if requested:  # asked to stop while the instance started: run nothing
        subprocess.run(_occlum("stop", "-t", stop_timeout), check=False)
        return 128 + requested[0]
    stopping: subprocess.Popen[bytes] | None = None
    program = subprocess.Popen(_occlum("exec", *argv))
    while True:
        try:
            status = program.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if requested and stopping is None:
                stopping = subprocess.Popen(_occlum("stop", "-t", stop_timeout))
    if stopping is None:
        stopping = subprocess.Popen(_occlum("stop", "-t", stop_timeout))
    stopped = stopping.wait()
    if stopped != 0:
        _say("error", f"occlum stop exited with status {stopped}")
        return status or stopped
    return 128 - status if status < 0 else status


def main() -> None:
    argv = sys.argv[1:]
    if not argv:
        _say("error", "no program: give one after the image name, or package with --cmd")
        sys.exit(2)
    try:
        check_platform()
        for line in check_privileges():
            _say("warning", line)
    except Refused as e:
        _say("error", str(e))
        sys.exit(126)
    if os.environ.get("OCCLUM_CONTAINER_MODE", "start") == "run":
        os.execv(OCCLUM, _occlum("run", *argv))
    sys.exit(_serve(argv))
