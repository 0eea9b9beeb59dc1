"""The stages of an instance's life: the init stage (the initfs's init mounts the root), the
program's process tree (or, for a started instance, the spawner's), the end of a tree, and the
exit status ``occlum run`` gives. The loop that serves a tree is :meth:`LibOS.loop`; this
module drives it (``run`` for ``occlum run``, ``serve`` for ``occlum start``), so it imports the
LibOS and the LibOS never imports it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import select
import selectors
import signal
import socket
from collections.abc import Callable

from occlum.errors import UserError
from occlum.kernel.libos import LibOS
from occlum.kernel.proctable import SIGNAMES
from occlum.platform import launch as launcher
from occlum.platform import native
from occlum.platform.seccomp import Listener


def run(libos: LibOS) -> int:
    """Boot: the init stage first (when the instance has an initfs), then the program."""
    spec = libos.spec
    env = [f"{k}={v}".encode() for k, v in spec.env]
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, functools.partial(forward_signal, libos))
    libos.collector.start()  # the file systems are mounted: they live as long as the instance
    try:
        if libos.stage == "init":
            run_init(libos, env)
        argv = [a.encode() for a in spec.argv]
        libos.check_program(libos, argv[0], "the instance", None)
        run_tree(libos, argv, env)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        shutdown(libos)
    return exit_code_after_commit(libos)


# An init that exits with this status has said why on stderr in one line (the attested-boot
# init: the broker refused, or could not be reached); the LibOS then adds no line of its own.
INIT_SAID_WHY_STATUS = 3


def run_init(libos: LibOS, env: list[bytes]) -> None:
    """Run the initfs's init until it exits; it must have mounted the root (mount_rootfs)
    and exited with status 0. Then the root it mounted replaces the initfs."""
    argv = [a.encode() for a in libos.spec.init_argv]
    libos.check_program(libos, argv[0], "the initfs", libos.spec.init_image)
    run_tree(libos, argv, env)
    status = libos.first_status if libos.first_status is not None else 127 << 8
    end_tree(libos)
    fsys = libos.filesystems
    pending, fsys.root_pending = fsys.root_pending, None
    init = libos.spec.init_argv[0]
    if fsys.boot_error is not None:
        raise UserError(f"cannot mount the root file system: {fsys.boot_error}")
    if os.WIFSIGNALED(status):
        why = f"was killed by {SIGNAMES.get(os.WTERMSIG(status), os.WTERMSIG(status))}"
    else:
        why = f"exited with status {os.WEXITSTATUS(status)}"
    if pending is None:
        said = os.WIFEXITED(status) and os.WEXITSTATUS(status) == INIT_SAID_WHY_STATUS
        raise UserError(f"init ({init}) {why} without mounting the root file system", shown=said)
    if status != 0:
        raise UserError(f"init ({init}) mounted the root file system but {why}")
    fsys.mounts = pending
    libos.stage = "app"
    libos.exec_cache.clear()  # the initfs's programs are gone with it
    libos.collector.settle()  # the initfs's tree is gone; the root lives as long as the instance


def serve(libos: LibOS, started: Callable[[int, socket.socket], None]) -> int:
    """A started instance (``occlum start``): the init stage, then a tree whose first
    process is the spawner, which runs the programs asked for on its channel (see
    :mod:`occlum.platform.spawner`) until the channel closes. ``started`` is called with
    the host pid of the tree's init and the channel once the spawner runs."""
    env = [f"{k}={v}".encode() for k, v in libos.spec.env]
    libos.foreground = False
    libos.log.echo = functools.partial(echo_to_caller, libos)
    libos.collector.start()
    try:
        if libos.stage == "init":
            run_init(libos, env)
        run_tree(libos, [b"/"], env, started=started)
    finally:
        shutdown(libos)
    return exit_code_after_commit(libos)


def echo_to_caller(libos: LibOS, line: bytes) -> None:
    """A started instance's log line about the calling program goes to its stderr too (the
    `occlum exec` caller's), when that takes the line without blocking the supervisor."""
    t = libos.current
    if t is None or t.process.pidfd < 0:
        return
    try:
        fd = native.pidfd_getfd(t.process.pidfd, 2)
    except OSError:
        return  # no stderr, or the process is gone
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if poller.poll(0):  # room for PIPE_BUF bytes: a write of that much never waits
            os.write(fd, line[: select.PIPE_BUF])
    except OSError:
        pass
    finally:
        os.close(fd)


def run_tree(
    libos: LibOS,
    argv: list[bytes],
    env: list[bytes],
    *,
    started: Callable[[int, socket.socket], None] | None = None,
) -> None:
    """Start a process tree whose first program is ``argv`` (or the spawner) and serve it
    until it ends."""
    libos.first_status = None
    procs = libos.proctable
    procs.first_host_pid = 0
    procs.spawner_pid = 0  # a started instance's spawner, when it is in the memory cgroup
    procs.spawned_by = 0
    cgroup_procs = libos.limits.start_tree()  # first: it sets limits.program for the tree
    try:
        launched = launcher.launch(
            libos.stub,
            argv[0],
            argv,
            env,
            hostname=libos.hostname,
            network=libos.spec.network,
            cgroup_procs=cgroup_procs,
            limits=libos.limits.program,
            foreground=libos.foreground,
            spawner=started is not None,
            filter_prog=libos.filter_program,
        )
    except launcher.LaunchError as exc:  # e.g. fork's EAGAIN: the host's process limit
        libos.limits.end_tree(launched=False)
        raise UserError(str(exc))
    procs.init_pid = launched.init_pid
    _raise_fd_limit()  # after the fork: the programs keep the limits they were given
    libos.shadow.attach(launched.shadow_root_fd)
    libos.filesystems.devpts.attach(launched.devpts_fd)
    os.mkdir(".handles", 0o700, dir_fd=libos.shadow.fd)
    libos.objects.scratch_fd = os.open(
        ".handles", os.O_RDONLY | os.O_DIRECTORY, dir_fd=libos.shadow.fd
    )
    libos.listener = Listener(launched.listener_fd)
    libos.control = launched.control
    libos.tree_live = True
    libos.sel.register(libos.control, selectors.EVENT_READ, "control")
    faults = procs.faults
    if faults.fd >= 0 and faults.fd not in libos.sel.get_map():
        libos.sel.register(faults.fd, selectors.EVENT_READ, "faults")
    if started is not None and launched.spawner is not None:
        procs.spawner_pid = libos.limits.find_spawner(procs.init_pid)
        procs.spawned_by = procs.spawner_pid or libos.limits.find_spawner(
            procs.init_pid, always=True
        )
        started(procs.init_pid, launched.spawner)
    libos.loop()


def forward_signal(libos: LibOS, signum: int, _frame: object) -> None:
    try:
        os.kill(libos.proctable.init_pid, signum)
    except ProcessLookupError:
        pass


def exit_code_after_commit(libos: LibOS) -> int:
    """The exit status, or 1 for a program that succeeded but whose writes were not all
    stored at exit (its last writes are lost; the log said why)."""
    code = exit_code(libos)
    return 1 if code == 0 and not libos.exit_committed else code


def exit_code(libos: LibOS) -> int:
    status = libos.first_status if libos.first_status is not None else (127 << 8)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (
            signal.SIGINT,
            signal.SIGTERM,
            signal.SIGPIPE,
            signal.SIGKILL,
            signal.SIGHUP,
        ):
            libos.proctable.report_first_crash(sig)
        return 128 + sig
    return os.WEXITSTATUS(status)


def end_tree(libos: LibOS) -> None:
    """Kill what is left of the current process tree and forget its processes."""
    if libos.proctable.init_pid:
        try:
            os.kill(libos.proctable.init_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(libos.proctable.init_pid, 0)
        except ChildProcessError:
            pass
        libos.proctable.init_pid = 0
        if libos.foreground:
            _take_terminal_back()
    libos.limits.end_tree()
    libos.proctable.forget_all()
    libos.proctable.end_marks()
    if libos.tree_live:
        libos.tree_live = False
        with contextlib.suppress(KeyError):
            libos.sel.unregister(libos.control)
        libos.control.close()
        libos.listener.close()
    for fd in (libos.objects.scratch_fd, libos.shadow.fd):
        if fd >= 0:
            os.close(fd)
    libos.objects.scratch_fd = -1
    libos.shadow.attach(-1)
    libos.objects.close()  # the tree's processes are gone, and every object with them
    libos.filesystems.devpts.attach(-1)


def shutdown(libos: LibOS) -> None:
    end_tree(libos)
    libos.exit_committed = libos.filesystems.close()
    libos.collector.stop()
    libos.log.debug(libos.collector.summary())


def _take_terminal_back() -> None:
    """Make our process group the terminal's foreground again (we are in the background)."""
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(0, os.getpgrp())
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, old)


def _raise_fd_limit() -> None:
    """The supervisor holds descriptors for many programs (caches, handles, pidfds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
