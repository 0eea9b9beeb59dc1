"""The program an exec runs: found in the VFS and opened once, its ``#!`` lines followed, its ELF
and its interpreter parsed; everything an ``execve`` must know before it may succeed.

An exec is prepared in full while the caller waits, so that a failing ``execve`` returns its
error as on Linux; what the stub is then given is :mod:`occlum.loader.plan`'s. The instance's
state this needs (its cache of read-only programs, whether a file is open for writing
somewhere) is handed in by the kernel as a :class:`ProgramOpener`.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import S_IFREG
from occlum.loader.elf import ElfImage, parse_elf
from occlum.vfs.cred import MAY_EXEC, ROOT, Cred, check_access
from occlum.vfs.path import PathOp, resolve

if TYPE_CHECKING:
    from occlum.vfs.inode import Inode
    from occlum.vfs.mount import FileSystem
    from occlum.vfs.path import Location

# a LibOS file as a program being run: its file system and inode number
FileIdentity = tuple["FileSystem", int]

MAX_SCRIPT_DEPTH = 4
EXEC_CACHE_SIZE = 64
# how a missing interpreter is put right (its ENOENT names the file it looked for)
COPY_HINT = " (copy it into the image, e.g. with copy_bom)"


class MissingInterpreter(SyscallError):
    """ENOENT for a program that exists but whose ELF or ``#!`` interpreter does not: the
    message names the missing file, which the program's ENOENT alone does not."""

    def __init__(self, why: str) -> None:
        super().__init__(errno.ENOENT, why)


@dataclass(slots=True, frozen=True)
class CachedProgram:
    """An executable of a read-only file system, kept open for repeated execs."""

    exe_path: bytes
    fd: int


@dataclass(slots=True)
class ExecRequest:
    """An ``execve`` the LibOS accepted; carried out when the stub asks for it."""

    exe_path: bytes  # absolute LibOS path of the program
    execfn: bytes  # the path as the caller gave it (AT_EXECFN)
    argv: list[bytes]
    envp: list[bytes]
    prog_fd: int
    prog: ElfImage
    interp_fd: int | None
    interp: ElfImage | None
    owned_fds: list[int] = field(default_factory=list)  # the others belong to the exec cache
    # (descriptor number, our copy of what it held): descriptors an execveat replaced so that
    # the kernel would find the stub there, put back in the new program (not close-on-exec)
    restore: list[tuple[int, int]] = field(default_factory=list)
    exe_id: FileIdentity | None = None  # the program's file (None: not a LibOS file)
    # the name the program gets in /proc/PID/comm, when the kernel's (the stub's) is wrong
    comm: bytes | None = None

    def close(self) -> None:
        for fd in self.owned_fds:
            os.close(fd)
        self.owned_fds.clear()
        for _n, fd in self.restore:
            os.close(fd)
        self.restore.clear()


class Executable(NamedTuple):
    """A file about to be executed: its name, a host descriptor of it, whether that descriptor
    is the caller's to close (else the exec cache's), and its identity as a running program's
    file (None for a file outside the LibOS's file systems)."""

    path: bytes
    fd: int
    owned: bool
    ident: FileIdentity | None


def file_identity(inode: Inode) -> FileIdentity:
    """A LibOS file's identity: its file system and inode number (inode objects may be
    wrappers made per lookup, as the union's are)."""
    return inode.fs, inode.ino


class ProgramOpener:
    """Opens programs for one instance: ``cache`` holds the descriptors of read-only programs
    (an image's cannot change while the instance runs, so a repeated exec of one costs a path
    walk and a dict lookup); ``open_for_writing`` tells whether a process of the instance
    holds the file behind a host descriptor open for writing (Linux does not execute such a
    file: ETXTBSY)."""

    __slots__ = ("cache", "open_for_writing")

    def __init__(
        self,
        cache: OrderedDict[tuple[int, int], CachedProgram],
        open_for_writing: Callable[[int], bool],
    ) -> None:
        self.cache = cache
        self.open_for_writing = open_for_writing

    def executable(self, loc: Location, cred: Cred = ROOT) -> Executable:
        """The file at ``loc``, which must be an executable regular file not open for
        writing."""
        inode = loc.inode
        if inode.ftype != S_IFREG:
            raise SyscallError(errno.EACCES, "not a regular file")
        check_access(inode.getattr(), cred, MAY_EXEC)
        ident = file_identity(inode)
        fixed = inode.immutable_content()
        key = (id(fixed.fs), fixed.ino) if fixed is not None else (0, 0)
        cache = self.cache
        if fixed is not None:
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                return Executable(hit.exe_path, hit.fd, False, ident)
        host_fd = inode.open_host_fd(os.O_RDONLY)
        exe_path = loc.absolute_path()
        if fixed is None:
            if self.open_for_writing(host_fd):
                os.close(host_fd)
                raise SyscallError(errno.ETXTBSY, f"{exe_path!r} is open for writing")
            return Executable(exe_path, host_fd, True, ident)
        cache[key] = CachedProgram(exe_path, host_fd)
        if len(cache) > EXEC_CACHE_SIZE:
            _old, gone = cache.popitem(last=False)
            os.close(gone.fd)
        return Executable(exe_path, host_fd, False, ident)

    def open(self, op: PathOp) -> Executable:
        """:meth:`executable` of the file ``op`` names, searched and executed with
        ``op.cred``'s rights (None: root's)."""
        loc = resolve(op)
        if loc.inode.is_symlink:
            raise SyscallError(errno.ELOOP, f"{op.path!r} is a symlink (AT_SYMLINK_NOFOLLOW)")
        return self.executable(loc, ROOT if op.cred is None else op.cred)

    def prepare(
        self,
        root: Location,
        cwd: Location,
        first: Executable,
        script_name: bytes | None,
        execfn: bytes,
        argv: list[bytes],
        envp: list[bytes],
        cred: Cred = ROOT,
    ) -> ExecRequest:
        """Everything an exec of ``first`` (opened once, by :meth:`open` or :meth:`executable`)
        needs, checked now. ``#!`` interpreters are found from ``cwd``, an ELF interpreter from
        ``root``, all searched and executed with ``cred``. ``script_name`` is the name a
        ``#!`` interpreter is given for the file; None when no interpreter could open it (a
        script run from a close-on-exec descriptor: ENOENT, as on Linux). ``execfn`` is
        AT_EXECFN."""
        exe_path, fd, owned, ident = first
        name = script_name
        for _depth in range(MAX_SCRIPT_DEPTH):
            owned_fds = [fd] if owned else []
            try:
                head = os.pread(fd, 256, 0)
            except OSError:
                for ofd in owned_fds:
                    os.close(ofd)
                raise
            if head.startswith(b"#!"):
                if owned:
                    os.close(fd)
                script = exe_path.decode(errors="replace")
                if name is None:
                    raise SyscallError(
                        errno.ENOENT,
                        f"{script} is a script run from a close-on-exec descriptor: "
                        "its interpreter could not open it",
                    )
                line = head[2:].split(b"\n", 1)[0].strip()
                if not line:
                    raise SyscallError(errno.ENOEXEC, f"{name!r}: empty #! line")
                interp, _, arg = line.partition(b" ")
                arg = arg.strip()
                argv = [interp, *([arg] if arg else []), name, *argv[1:]]
                try:
                    exe_path, fd, owned, ident = self.open(PathOp(root, cwd, interp, cred=cred))
                except SyscallError as exc:
                    if exc.errno == errno.ENOENT and not isinstance(exc, MissingInterpreter):
                        raise MissingInterpreter(
                            f"{script}: its #! interpreter {interp.decode(errors='replace')} "
                            f"is missing in the instance{COPY_HINT}",
                        )
                    raise
                name = interp
                continue
            try:
                prog = parse_elf(fd, exe_path.decode(errors="replace"))
                interp_fd = None
                interp_img: ElfImage | None = None
                if prog.interp is not None:
                    try:
                        found = self.open(PathOp(root, root, prog.interp, cred=cred))
                    except SyscallError as exc:
                        if exc.errno == errno.ENOENT:
                            raise MissingInterpreter(
                                f"{exe_path.decode(errors='replace')}: its ELF interpreter "
                                f"{prog.interp.decode(errors='replace')} is missing in the "
                                f"instance{COPY_HINT}",
                            )
                        raise
                    interp_fd = found.fd
                    if found.owned:
                        owned_fds.append(interp_fd)
                    interp_img = parse_elf(interp_fd, prog.interp.decode(errors="replace"))
            except BaseException:
                for ofd in owned_fds:
                    os.close(ofd)
                raise
            return ExecRequest(
                exe_path,
                execfn,
                argv,
                envp,
                fd,
                prog,
                interp_fd,
                interp_img,
                owned_fds,
                exe_id=ident,
            )
        raise SyscallError(errno.ELOOP, "too many levels of #! interpreters")
