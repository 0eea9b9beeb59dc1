"""Starting an instance's process tree: namespaces, the empty root, the filter, the listener.

    supervisor ──fork──► setup child: unshare(mnt, pid, uts, ipc, net); tmpfs root; pivot_root
                              └──fork──► init (pid 1 of the instance): reaps, forwards signals
                                             └──fork──► first program (pid 2): no capabilities,
                                                        no_new_privs, seccomp filter with a
                                                        listener handed to the supervisor, execve

The mount namespace's root is a small tmpfs holding nothing but the loader stub: even a hole in
the filter shows the program no host file. ``execve`` paths resolve there too: the supervisor
hard-links the stub at each path a program executes, so the kernel only ever runs the stub.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import signal
import socket
import struct
import sys
from dataclasses import dataclass

from occlum.platform import native
from occlum.platform.fdpass import recv_fds, send_fds
from occlum.platform.limits import ProgramLimits, open_memory_cgroup
from occlum.platform.readiness import readable
from occlum.platform.seccomp import (
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
)
from occlum.platform.spawner import exec_program, serve_requests

STUB_NAME = ".occlum-stub"
LANDLOCK_SCOPES = (
    native.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | native.LANDLOCK_SCOPE_SIGNAL
    if native.landlock_abi() >= native.LANDLOCK_SCOPE_ABI
    else 0
)


@dataclass(slots=True)
class Launched:
    init_pid: int  # host pid of the instance's init
    listener_fd: int
    shadow_root_fd: int  # directory fd of the tmpfs root of the instance's mount namespace
    control: socket.socket  # init reports the first program's fate here
    spawner: socket.socket | None = None  # the channel to a started instance's spawner
    devpts_fd: int = -1  # the root of the tree's own devpts instance, -1 if none could be made


class LaunchError(OSError):
    """The tree could not be started; the message says at which step and why."""


def _fork_failed(exc: OSError) -> str:
    why = f"fork: {exc.strerror or exc}"
    if exc.errno == errno.EAGAIN:  # RLIMIT_NPROC, a pids cgroup, kernel.threads-max
        why += " (the host's limit on processes was reached)"
    return why


def _fork_or_die(sock: socket.socket, stage: str) -> int:
    """fork() in a process of the tree being set up: a failure is reported to the supervisor
    (which says it in one line) and ends this process, never unwinds into the caller's code."""
    try:
        return os.fork()
    except OSError as exc:
        with contextlib.suppress(OSError):
            sock.send(f"E{stage}: {_fork_failed(exc)}".encode())
        os._exit(126)


def _die(sock: socket.socket, stage: str, exc: BaseException) -> None:
    try:
        sock.send(f"E{stage}: {exc}".encode())
    finally:
        os._exit(126)


def launch(
    stub: bytes,
    exec_path: bytes,
    argv: list[bytes],
    env: list[bytes],
    *,
    filter_prog: bytes,
    hostname: bytes,
    network: str,
    stdio: tuple[int, int, int] = (0, 1, 2),
    cgroup_procs: str | None = None,
    limits: ProgramLimits | None = None,
    foreground: bool = False,
    spawner: bool = False,
) -> Launched:
    """Start the tree; the first program's ``execve(exec_path)`` is the first notification.
    ``filter_prog`` is the seccomp filter every program of the tree runs under (made from the
    syscall table, see ``seccomp.build_filter``).

    With ``spawner``, the tree's first process is no program but the spawner of a started
    instance (see :mod:`occlum.platform.spawner`): it runs each program asked for on the
    channel returned in ``Launched.spawner``, under the same filter, and reports how it ended.
    """
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    channel, spawner_end = (
        socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) if spawner else (None, None)
    )
    native.prctl(native.PR_SET_CHILD_SUBREAPER, 1)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        setup_pid = os.fork()
    except OSError as exc:
        for s in (parent_sock, child_sock, channel, spawner_end):
            if s is not None:
                s.close()
        raise LaunchError(f"cannot start the instance: {_fork_failed(exc)}")
    if setup_pid == 0:
        parent_sock.close()
        if channel is not None:
            channel.close()
        _setup_child(
            child_sock, stub, exec_path, argv, env, hostname, network, filter_prog,
            cgroup_procs, limits, foreground, spawner_end,
        )  # fmt: skip
        os._exit(127)  # not reached
    child_sock.close()
    if spawner_end is not None:
        spawner_end.close()
    got: dict[bytes, tuple[bytes, list[int]]] = {}
    try:
        # "P" (init pid, root dir[, devpts]) and "L" (listener) arrive in any order
        while len(got) < 2:
            msg, fds = recv_fds(parent_sock, 256, 4)
            if not msg or msg.startswith(b"E"):
                why = msg[1:].decode(errors="replace") if msg else "setup process died"
                raise LaunchError(f"cannot start the instance: {why}")
            if not fds:
                raise LaunchError(f"cannot start the instance: unexpected message {msg[:16]!r}")
            got[msg[:1]] = (msg[1:], fds)
    finally:
        try:
            os.waitpid(setup_pid, 0)
        except ChildProcessError:
            pass
    init_pid = struct.unpack("<i", got[b"P"][0][:4])[0]
    shadow_fd, listener_fd = got[b"P"][1][0], got[b"L"][1][0]
    devpts_fd = got[b"P"][1][1] if len(got[b"P"][1]) > 1 else -1
    return Launched(init_pid, listener_fd, shadow_fd, parent_sock, channel, devpts_fd)


def _write(path: bytes, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _loopback_up() -> None:
    """The instance's own network namespace starts with ``lo`` down; programs expect it up."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = bytearray(struct.pack("16sH22x", b"lo", 0))
        fcntl.ioctl(s.fileno(), siocgifflags, req, True)
        flags = struct.unpack_from("H", req, 16)[0] | iff_up
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH22x", b"lo", flags))


def _setup_child(
    sock: socket.socket,
    stub: bytes,
    exec_path: bytes,
    argv: list[bytes],
    env: list[bytes],
    hostname: bytes,
    network: str,
    filter_prog: bytes,
    cgroup_procs: str | None,
    limits: ProgramLimits | None,
    foreground: bool,
    spawner: socket.socket | None,
) -> None:
    try:
        native.prctl(native.PR_SET_PDEATHSIG, signal.SIGKILL)
        if cgroup_procs is not None:  # every process of the tree is counted from here on
            _write(cgroup_procs.encode(), str(os.getpid()).encode())
        if limits is not None:  # the programs (or the spawner) join the memory cgroup; init not
            limits = open_memory_cgroup(limits)
        # a network namespace of the tree's own, whatever the network: there the programs'
        # abstract Unix socket names are theirs alone ("host": the supervisor makes their
        # IPv4, IPv6 and NETLINK_ROUTE sockets on the host's network, syscalls/net.py;
        # "loopback": its own loopback only; "none": not even that)
        flags = (
            native.CLONE_NEWNS | native.CLONE_NEWPID | native.CLONE_NEWUTS | native.CLONE_NEWIPC
            | native.CLONE_NEWNET
        )  # fmt: skip
        uid, gid = os.geteuid(), os.getegid()
        if uid != 0:
            # /proc/self/{uid,gid}_map and the supervisor's /proc/PID/mem need a dumpable
            # process (a process that changed its uids is not, by default)
            native.prctl(native.PR_SET_DUMPABLE, 1)
            # without root, a user namespace of our own grants what the others need; the
            # instance's root (uid 0 inside) is the invoking user outside
            flags |= native.CLONE_NEWUSER
        native.unshare(flags)
        if uid != 0:
            _write(b"/proc/self/setgroups", b"deny")
            _write(b"/proc/self/uid_map", b"0 %d 1" % uid)
            _write(b"/proc/self/gid_map", b"0 %d 1" % gid)
        native.mount(b"none", b"/", None, native.MS_REC | native.MS_PRIVATE, None)
        work = b"/tmp"
        native.mount(
            b"occlum", work, b"tmpfs", native.MS_NOSUID | native.MS_NODEV, b"mode=0755,size=8m"
        )
        fd = os.open(
            os.path.join(work, STUB_NAME.encode()), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755
        )
        os.write(fd, stub)
        os.close(fd)
        os.chdir(work)
        native.pivot_root(b".", b".")
        native.umount2(b".", native.MNT_DETACH)
        os.chdir(b"/")
        native.sethostname(hostname)
        if network == "loopback":
            _loopback_up()
    except OSError as exc:
        _die(sock, "namespaces", exc)
    devpts_fd = _private_devpts()
    init_pid = _fork_or_die(sock, "init")  # pid 1 of the new PID namespace
    if init_pid:
        root_fd = os.open(b"/", os.O_DIRECTORY | os.O_RDONLY)
        fds = [root_fd] if devpts_fd < 0 else [root_fd, devpts_fd]
        send_fds(sock, b"P" + struct.pack("<i", init_pid), fds)
        os._exit(0)
    if devpts_fd >= 0:
        os.close(devpts_fd)
    _init(sock, exec_path, argv, env, filter_prog, limits, foreground, spawner)


def _private_devpts() -> int:
    """The root directory of a devpts instance of the tree's own (each devpts mount is one,
    Linux >= 4.7), or -1 when none can be mounted. It is mounted and at once detached: no
    program's mount namespace shows it, and the descriptor alone keeps it alive in the
    supervisor, which opens its ``ptmx`` and its slaves for the programs' ``/dev/ptmx`` and
    ``/dev/pts/N``. ``ptmxmode=0666``: the supervisor (the instance's root only through the
    user namespace) opens ``ptmx`` by its mode bits."""
    where = b"/.devpts"
    try:
        os.mkdir(where, 0o700)
    except OSError:
        return -1
    fd = -1
    try:
        native.mount(
            b"devpts", where, b"devpts", native.MS_NOSUID | native.MS_NOEXEC,
            b"newinstance,ptmxmode=0666,mode=0620",
        )  # fmt: skip
        try:
            fd = os.open(where, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        finally:
            native.umount2(where, native.MNT_DETACH)
    except OSError:
        if fd >= 0:
            os.close(fd)
        fd = -1
    finally:
        os.rmdir(where)
    return fd


def _init(
    sock: socket.socket,
    exec_path: bytes,
    argv: list[bytes],
    env: list[bytes],
    filter_prog: bytes,
    limits: ProgramLimits | None,
    foreground: bool,
    spawner: socket.socket | None,
) -> None:
    """pid 1: start the first program, reap orphans, report how the first program ended."""
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)
    pid = _fork_or_die(sock, "the first program")
    if pid == 0:
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        try:
            if spawner is not None:
                _spawner_process(sock, spawner, filter_prog, limits)
            _first_program(sock, exec_path, argv, env, filter_prog, limits)
        finally:
            os._exit(127)  # never back into the supervisor's code
    # the first program leads a process group of its own, as a shell's job does, and has the
    # terminal's foreground when `occlum run` had it (the supervisor gives it back at the end)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    if foreground:
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            os.tcsetpgrp(0, pid)
    forwarded = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in forwarded:
        signal.signal(sig, forward)
    # SIGCHLD wakes the loop through a pipe; the socket to the supervisor tells if it died
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    first_status: int | None = None
    while first_status is None:
        while True:  # reap every child that ended: the first program and orphans alike
            try:
                reaped, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                reaped = 0
            if reaped == 0:
                break
            if reaped == pid:
                first_status = status
        if first_status is not None:
            break
        ready = readable([sock.fileno(), wake_r])
        if sock.fileno() in ready:
            try:
                gone = not sock.recv(16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                # the supervisor died: no program may outlive it (nothing would serve it)
                os.kill(-1, signal.SIGKILL)
                os._exit(137)
        if wake_r in ready:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
    try:
        sock.send(b"S" + struct.pack("<i", first_status))
    except OSError:
        pass
    os._exit(0)


def _confine(sock: socket.socket, filter_prog: bytes) -> None:
    """Give up every privilege, install the filter and hand its listener to the supervisor."""
    try:
        native.prctl(native.PR_SET_NO_NEW_PRIVS, 1)
        native.drop_all_capabilities()
        if LANDLOCK_SCOPES:
            # the instance's abstract Unix sockets and signals stay its own: a program can
            # reach neither an abstract socket the host bound (whatever call it uses, sendmsg
            # included, which runs natively) nor a process outside the instance
            native.landlock_scope(LANDLOCK_SCOPES)
        listener = native.seccomp_set_filter(
            SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, filter_prog
        )
    except OSError as exc:
        _die(sock, "seccomp", exc)
    send_fds(sock, b"L", [listener])
    os.close(listener)
    sock.close()


def _spawner_process(
    sock: socket.socket,
    channel: socket.socket,
    filter_prog: bytes,
    limits: ProgramLimits | None,
) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)  # a program's `kill -TERM -1` must not end it
    _confine(sock, filter_prog)
    if limits is not None and limits.memory_fd >= 0:
        # The spawner joins the memory cgroup once, and each program it forks is in it from
        # its fork: moving a process into a cgroup (v1) waits for an RCU grace period, about
        # 15 ms here, which every `occlum exec` would pay. The supervisor makes each program
        # the out-of-memory killer's choice before the spawner (Limits.before_spawner).
        with contextlib.suppress(OSError):
            os.write(limits.memory_fd, b"0")
        os.close(limits.memory_fd)
        limits = dataclasses.replace(limits, memory_fd=-1)
    # nothing of the supervisor's but the channel stays open in here
    os.closerange(3, channel.fileno())
    os.closerange(channel.fileno() + 1, os.sysconf("SC_OPEN_MAX"))
    code = 1
    try:
        code = serve_requests(channel, limits)
    finally:
        os._exit(code)  # never back into the supervisor's code


def _first_program(
    sock: socket.socket,
    exec_path: bytes,
    argv: list[bytes],
    env: list[bytes],
    filter_prog: bytes,
    limits: ProgramLimits | None,
) -> None:
    _confine(sock, filter_prog)
    exec_program(exec_path, argv, env, limits)
