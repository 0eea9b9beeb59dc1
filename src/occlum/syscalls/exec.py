"""execve/execveat and the loader stub's call: programs are loaded by the LibOS, not the host.

``execve`` copies its arguments in and has :mod:`occlum.loader.program` open and check the
program (its interpreter, ``#!`` scripts); then the kernel is let to execute the loader stub,
which the supervisor placed at the very path the program named in the instance's empty mount
namespace. The stub's first call lands in :func:`sys_stub`, which installs the program's
descriptors and writes :func:`occlum.loader.plan.plan_exec`'s mappings and stack into it.
"""

from __future__ import annotations

import errno
import os
import stat
from functools import partial
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW
from occlum.kernel.api import PROCEED
from occlum.kernel.process import Process, Task
from occlum.loader.debug import DebugExec, read_mm_fields
from occlum.loader.plan import AT_EGID, AT_EUID, AT_GID, AT_UID, parse_kernel_auxv, plan_exec
from occlum.loader.program import (
    ExecRequest,
    Executable,
    ProgramOpener,
    file_identity,
)
from occlum.loader.program import MissingInterpreter as MissingInterpreter  # for occlum.boot
from occlum.platform import launch as launcher
from occlum.platform import native
from occlum.platform.readiness import readable
from occlum.platform.stub import BUFFER_ADDR
from occlum.syscalls.common import path_op
from occlum.syscalls.cred import exec_cred
from occlum.vfs.path import PathOp

if TYPE_CHECKING:
    from occlum.kernel.api import Result
    from occlum.kernel.libos import LibOS
    from occlum.vfs.inode import Inode
    from occlum.vfs.path import Location


def program_running(libos: LibOS, inode: Inode) -> bool:
    """Whether some process of the instance runs the file ``inode`` (its main program, not its
    interpreter or libraries: Linux denies writing to that one only, ETXTBSY)."""
    ident = file_identity(inode)
    return any(p.exe_id == ident and _alive(p) for p in libos.proctable.procs.values())


def _alive(p: Process) -> bool:
    """Not exited, though the serving loop may not have read its exit yet (its pidfd is
    readable from the exit on): the caller may have waited for it already."""
    try:
        return not readable([p.pidfd], 0)
    except (OSError, ValueError):
        return False


def _programs(libos: LibOS) -> ProgramOpener:
    """The instance's way of opening programs: its exec cache, its processes' descriptors."""
    return ProgramOpener(libos.exec_cache, partial(_open_for_writing, libos))


def _open_for_writing(libos: LibOS, host_fd: int) -> bool:
    """Whether a process of the instance holds the file behind ``host_fd`` open for writing
    (Linux does not execute such a file: ETXTBSY). Programs write through descriptors of
    their own (the page cache's memfd, a hostfs file), so their descriptors are looked at:
    only for files that can change, the image's cannot."""
    st = os.fstat(host_fd)
    key = (st.st_dev, st.st_ino)
    return any(
        (fst.st_dev, fst.st_ino) == key and _writable(p.host_pid, name)
        for p, name, fst in libos.proctable.held(programs_only=True)
    )


def _writable(host_pid: int, fd: str) -> bool:
    try:
        with open(f"/proc/{host_pid}/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"flags:"):
                    return int(line.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _host_executable(p: Process, fd: int, st: os.stat_result) -> Executable:
    """A file the program holds that is not the LibOS's (a memfd it made and filled): the
    LibOS loads it from its contents, as the kernel would, never letting the kernel run it."""
    if not stat.S_ISREG(st.st_mode):
        raise SyscallError(errno.EACCES, "not a regular file")
    if not st.st_mode & 0o111:
        raise SyscallError(errno.EACCES, "no execute permission")
    copy = native.pidfd_getfd(p.pidfd, fd)
    try:
        # a description of our own, for reading: the program's may be write-only
        own = os.open(f"/proc/self/fd/{copy}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(copy)
    try:
        name = os.fsencode(os.readlink(f"/proc/{p.host_pid}/fd/{fd}"))
    except OSError:
        name = b"/proc/self/fd/%d" % fd
    return Executable(name, own, True, None)


def _read_strings(t: Task, addr: int) -> list[bytes]:
    mem = t.mem
    return mem.read_cstrings(mem.read_pointer_array(addr))


def _read_argv(t: Task, addr: int) -> list[bytes]:
    """The argument vector; an empty one (or NULL) becomes one empty string, as Linux 5.18 and
    later make it, so that a program never starts with argc 0 (CVE-2021-4034)."""
    return _read_strings(t, addr) or [b""]


def _accept(libos: LibOS, p: Process, req: ExecRequest) -> Result:
    libos.proctable.settle_children(p)
    if p.pending_exec is not None:
        p.pending_exec.close()
    p.pending_exec = req
    return PROCEED


def do_execve(
    libos: LibOS,
    t: Task,
    path: bytes,
    argv_ptr: int,
    envp_ptr: int,
    follow: bool = True,
) -> Result:
    p = t.process
    argv = _read_argv(t, argv_ptr)
    envp = _read_strings(t, envp_ptr)
    if not path:
        raise SyscallError(errno.ENOENT, "empty path")
    programs = _programs(libos)
    first = programs.open(PathOp(p.root, p.cwd, path, follow, cred=t.cred))
    req = programs.prepare(p.root, p.cwd, first, path, path, argv, envp, t.cred)
    try:
        libos.shadow.stub(path)
    except SyscallError:
        req.close()
        raise
    return _accept(libos, p, req)


def check_program(libos: LibOS, root: Location, path: bytes) -> None:
    """Check ``path`` as an exec of it would (``occlum run`` does before it starts)."""
    programs = _programs(libos)
    first = programs.open(PathOp(root, root, path))
    programs.prepare(root, root, first, path, path, [path], []).close()


def _report_missing(libos: LibOS, t: Task, exc: MissingInterpreter) -> None:
    """The program gets ENOENT, as on Linux; the log says which file was missing, once."""
    p = t.process
    libos.warn_once(
        exc.why, f"exec by {p.exe_path.decode(errors='replace')} (pid {p.pid}): {exc.why}"
    )


def sys_execve(libos: LibOS, t: Task, path: int, argv: int, envp: int) -> Result:
    try:
        return do_execve(libos, t, t.mem.read_cstring(path), argv, envp)
    except MissingInterpreter as exc:
        _report_missing(libos, t, exc)
        raise


def _cloexec(host_pid: int, fd: int) -> bool:
    """Whether descriptor ``fd`` of a process is close-on-exec (its fdinfo "flags", octal)."""
    try:
        with open(f"/proc/{host_pid}/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"flags:"):
                    return bool(int(line.split()[1], 8) & os.O_CLOEXEC)
    except (OSError, ValueError, IndexError):
        pass
    raise SyscallError(errno.EBADF, f"descriptor {fd} is not open")


def _swap_descriptor(
    libos: LibOS, t: Task, req: ExecRequest, fd: int, cloexec: bool, replacement: int
) -> None:
    """Put ``replacement`` at the program's descriptor ``fd`` for the kernel's execveat, which
    uses that descriptor, not a path; what ``fd`` held comes back in the new program unless it
    was close-on-exec (:func:`_load`).

    A thread of the program sharing its descriptor table could change ``fd`` again before the
    kernel reads it: the kernel would then run a file the program already holds, under the
    same filter, in the same empty mount namespace, with no new privileges (no_new_privs) —
    no more than the program could do by mapping that file itself."""
    if not cloexec:
        req.restore.append((fd, native.pidfd_getfd(t.process.pidfd, fd)))
    libos.listener.add_fd(t.notif_id, replacement, cloexec, send=False, target=fd)


def _exec_descriptor(libos: LibOS, t: Task, fd: int, argv_ptr: int, envp_ptr: int) -> Result:
    """execveat(fd, "", AT_EMPTY_PATH), fexecve: the file behind the descriptor, as Linux."""
    p = t.process
    argv = _read_argv(t, argv_ptr)
    envp = _read_strings(t, envp_ptr)
    programs = _programs(libos)
    if fd == AT_FDCWD:
        first = programs.executable(p.cwd, t.cred)  # a directory: EACCES
    else:
        if fd < 0:
            raise SyscallError(errno.EBADF, "negative descriptor")
        try:
            ref, st = libos.objects.lookup_stat(p.host_pid, fd)
        except OSError:
            raise SyscallError(errno.EBADF, f"descriptor {fd} is not open")
        # not a LibOS file: a memfd of the program's own, say
        first = (
            _host_executable(p, fd, st)
            if ref is None
            else programs.executable(ref.location, t.cred)
        )
    try:
        cloexec = _cloexec(p.host_pid, fd)
    except SyscallError:
        if first.owned:
            os.close(first.fd)
        raise
    # an interpreter is told "/dev/fd/N", which it cannot open if N closes at the exec
    name = b"/dev/fd/%d" % fd
    req = programs.prepare(
        p.root, p.cwd, first, None if cloexec else name, name, argv, envp, t.cred
    )
    # Linux names the process after the file, not after "/dev/fd/N" (the kernel here would
    # take the stub's name); a memfd's file name is "memfd:NAME"
    req.comm = os.path.basename(req.exe_path).removesuffix(b" (deleted)")[:15]
    try:
        stub = os.open(launcher.STUB_NAME, os.O_RDONLY | os.O_CLOEXEC, dir_fd=libos.shadow.fd)
        try:
            _swap_descriptor(libos, t, req, fd, cloexec, stub)
        finally:
            os.close(stub)
    except BaseException:
        req.close()
        raise
    return _accept(libos, p, req)


def sys_execveat(
    libos: LibOS, t: Task, dirfd: int, path: int, argv: int, envp: int, flags: int
) -> Result:
    try:
        return _execveat(libos, t, dirfd, path, argv, envp, flags)
    except MissingInterpreter as exc:
        _report_missing(libos, t, exc)
        raise


def _execveat(
    libos: LibOS, t: Task, dirfd: int, path: int, argv: int, envp: int, flags: int
) -> Result:
    name = t.mem.read_cstring(path)
    follow = not flags & AT_SYMLINK_NOFOLLOW
    if not name and flags & AT_EMPTY_PATH:
        return _exec_descriptor(libos, t, dirfd, argv, envp)
    if dirfd == AT_FDCWD or name.startswith(b"/") or not name:
        return do_execve(libos, t, name, argv, envp, follow)
    # relative to a directory descriptor: the kernel resolves the name from the descriptor,
    # so the descriptor becomes the shadow root (every program's host root), where the stub
    # is linked at that name
    p = t.process
    op = path_op(libos, t, dirfd, name, follow=follow)
    argv_list = _read_argv(t, argv)
    envp_list = _read_strings(t, envp)
    cloexec = _cloexec(p.host_pid, dirfd)
    programs = _programs(libos)
    first = programs.open(op)
    shown = b"/dev/fd/%d/%s" % (dirfd, name)
    req = programs.prepare(
        p.root,
        p.cwd,
        first,
        None if cloexec else shown,
        shown,
        argv_list,
        envp_list,
        t.cred,
    )
    try:
        libos.shadow.stub(name)
        _swap_descriptor(libos, t, req, dirfd, cloexec, libos.shadow.fd)
    except BaseException:
        req.close()
        raise
    return _accept(libos, p, req)


def sys_stub(libos: LibOS, t: Task, buffer: int, rsp0: int) -> int:
    """The stub asks for its load plan: map the program, build the stack, tell it where to go."""
    p = t.process
    req = p.pending_exec
    if req is None or buffer != BUFFER_ADDR:
        return libos.missing(t, t.nr)  # not the stub of an accepted exec (the stub exits 127)
    p.pending_exec = None
    p.new_address_space()
    libos.proctable.forget_threads(p, t.tid)
    try:
        return _load(libos, t, req, rsp0)
    except SyscallError as exc:
        libos.log.error(f"cannot load {req.exe_path.decode(errors='replace')}: {exc}")
        return -1
    finally:
        req.close()


def _load(libos: LibOS, t: Task, req: ExecRequest, rsp0: int) -> int:
    p = t.process
    mem = t.mem
    # argc, argv, envp and auxv the kernel placed above rsp0: a page is usually enough
    start_block = mem.read_some(rsp0, 4096 - rsp0 % 4096 + 4096)
    kernel_aux = parse_kernel_auxv(start_block)
    if kernel_aux is None:  # a large environment: read on
        kernel_aux = parse_kernel_auxv(mem.read_some(rsp0, 1 << 20)) or {}
    listener = libos.listener
    prog_fd = listener.add_fd(t.notif_id, req.prog_fd, True, send=False)
    interp_fd = None
    if req.interp is not None and req.interp_fd is not None:
        interp_fd = listener.add_fd(t.notif_id, req.interp_fd, True, send=False)
    for fd, original in req.restore:  # what an execveat replaced by the stub, not close-on-exec
        listener.add_fd(t.notif_id, original, False, send=False, target=fd)
    # the new program's credentials (execve recomputes capabilities, the saved ids follow
    # the effective ones) are the LibOS's, and so are the ids the auxiliary vector tells it
    cred = exec_cred(t.cred)
    if cred is not t.cred and cred != t.cred:
        libos.proctable.mark(t.tid, cred)
    t.cred = p.cred = cred
    ids = {AT_UID: cred.uid, AT_EUID: cred.euid, AT_GID: cred.gid, AT_EGID: cred.egid}
    debug = _debug_exec(libos, t)
    start = plan_exec(req, prog_fd, interp_fd, kernel_aux, ids, rsp0, debug)
    mem.write_forced(start.rsp, start.stack)
    if req.comm is not None:
        mem.write_forced(start.comm_at, req.comm + b"\0")
    mem.write_forced(BUFFER_ADDR, start.buffer)
    p.exe_path = req.exe_path
    p.exe_id = req.exe_id
    p.argv = req.argv
    p.envp = req.envp
    p.arg_area = start.args
    if debug is not None and debug.gate is not None and libos.spec.debug is not None:
        libos.spec.debug.host_pid = p.host_pid
        os.write(libos.spec.debug.pid_fd, b"%d\n" % p.host_pid)
    return start.commands


def _debug_exec(libos: LibOS, t: Task) -> DebugExec | None:
    """``occlum gdb``: what the program's exec does for the debugger (the init stage's are
    not debugged); the first program waits for it before its entry."""
    p = t.process
    stop = libos.spec.debug
    if stop is None or libos.stage != "app":
        return None
    gate = None
    if stop.gate_fd >= 0 and not stop.host_pid and p.host_pid == libos.proctable.first_host_pid:
        gate = libos.listener.add_fd(t.notif_id, stop.gate_fd, True, send=False)
    return DebugExec(read_mm_fields(p.host_pid), gate)
