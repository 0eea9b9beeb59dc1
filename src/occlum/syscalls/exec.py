"""execve/execveat and the loader stub's call: programs are loaded by the LibOS, not the host.

``execve`` is checked and prepared here (the file, its interpreter, ``#!`` scripts), then the
kernel is let to execute the loader stub, which the supervisor placed at the very path the
program named in the instance's empty mount namespace. The stub's first call lands in
:func:`sys_stub`, which maps the program and its interpreter and builds the initial stack.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW
from occlum.kernel.process import CachedProgram, ExecRequest, Task
from occlum.loader.elf import ElfImage, parse_elf
from occlum.loader.plan import (
    AT_BASE,
    AT_ENTRY,
    AT_FLAGS,
    AT_PAGESZ,
    AT_PHDR,
    AT_PHENT,
    AT_PHNUM,
    AT_SECURE,
    INHERITED_AUXV,
    INTERP_BASE,
    PIE_BASE,
    LoadPlan,
    build_stack,
    map_image,
    parse_kernel_auxv,
    random_bias,
)
from occlum.platform.stub import BUFFER_ADDR, COMMANDS_OFFSET, MAX_COMMANDS
from occlum.syscalls.common import dirfd_base
from occlum.vfs.inode import MAY_EXEC, ROOT, check_access
from occlum.vfs.open import open_path
from occlum.vfs.path import resolve

if TYPE_CHECKING:
    from occlum.kernel.libos import LibOS, Result
    from occlum.vfs.path import Location

MAX_SCRIPT_DEPTH = 4
MASK64 = (1 << 64) - 1


EXEC_CACHE_SIZE = 64


def _open_exec(libos: LibOS, root: Location, cwd: Location, path: bytes) -> tuple[bytes, int, bool]:
    """(absolute path, host descriptor, whether the caller owns it) of an executable file.

    Programs of read-only file systems (the image) cannot change while the instance runs:
    their descriptors stay open in a small cache, so a repeated exec of the same program costs
    a path walk and a dict lookup.
    """
    loc = resolve(root, cwd, path, follow_final=True)
    fixed = loc.inode.immutable_content()
    key = (id(fixed.fs), fixed.ino) if fixed is not None else (0, 0)
    cache = libos.exec_cache
    if fixed is not None:
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
            return hit.exe_path, hit.fd, False
    res = open_path(root, cwd, None, path, os.O_RDONLY)
    if res.host_fd is None:
        raise SyscallError(errno.EACCES, f"{path!r} is not a regular file")
    try:
        check_access(res.location.inode.getattr(), ROOT, MAY_EXEC)
    except SyscallError:
        os.close(res.host_fd)
        raise
    exe_path = res.location.absolute_path()
    if fixed is None:
        return exe_path, res.host_fd, True
    cache[key] = CachedProgram(exe_path, res.host_fd)
    if len(cache) > EXEC_CACHE_SIZE:
        _old, gone = cache.popitem(last=False)
        os.close(gone.fd)
    return exe_path, res.host_fd, False


def prepare_exec(
    libos: LibOS, root: Location, cwd: Location, path: bytes, argv: list[bytes], envp: list[bytes]
) -> ExecRequest:
    """Everything an exec needs, checked now so that a failing execve returns an error."""
    execfn = path
    for _depth in range(MAX_SCRIPT_DEPTH):
        exe_path, fd, owned = _open_exec(libos, root, cwd, path)
        owned_fds = [fd] if owned else []
        head = os.pread(fd, 256, 0)
        if head.startswith(b"#!"):
            if owned:
                os.close(fd)
            line = head[2:].split(b"\n", 1)[0].strip()
            if not line:
                raise SyscallError(errno.ENOEXEC, f"{path!r}: empty #! line")
            interp, _, arg = line.partition(b" ")
            arg = arg.strip()
            argv = [interp, *([arg] if arg else []), path, *argv[1:]]
            path = interp
            continue
        try:
            prog = parse_elf(fd, exe_path.decode(errors="replace"))
            interp_fd = None
            interp_img: ElfImage | None = None
            if prog.interp is not None:
                try:
                    _ipath, interp_fd, interp_owned = _open_exec(libos, root, root, prog.interp)
                except SyscallError as exc:
                    if exc.errno == errno.ENOENT:
                        raise SyscallError(
                            errno.ENOENT,
                            f"{exe_path.decode(errors='replace')}: interpreter "
                            f"{prog.interp.decode(errors='replace')} is missing in the instance",
                        )
                    raise
                if interp_owned:
                    owned_fds.append(interp_fd)
                interp_img = parse_elf(interp_fd, prog.interp.decode(errors="replace"))
        except BaseException:
            for ofd in owned_fds:
                os.close(ofd)
            raise
        return ExecRequest(exe_path, execfn, argv, envp, fd, prog, interp_fd, interp_img, owned_fds)
    raise SyscallError(errno.ELOOP, "too many levels of #! interpreters")


def _read_strings(t: Task, addr: int) -> list[bytes]:
    mem = t.mem
    return mem.read_cstrings(mem.read_pointer_array(addr))


def do_execve(libos: LibOS, t: Task, path: bytes, argv_ptr: int, envp_ptr: int) -> Result:
    from occlum.kernel.libos import PROCEED

    p = t.process
    argv = _read_strings(t, argv_ptr)
    envp = _read_strings(t, envp_ptr)
    if not path:
        raise SyscallError(errno.ENOENT, "empty path")
    req = prepare_exec(libos, p.root, p.cwd, path, argv, envp)
    try:
        libos.shadow_stub(path)
    except SyscallError:
        req.close()
        raise
    libos.settle_children(p)
    if p.pending_exec is not None:
        p.pending_exec.close()
    p.pending_exec = req
    return PROCEED


def sys_execve(libos: LibOS, t: Task, path: int, argv: int, envp: int) -> Result:
    return do_execve(libos, t, t.mem.read_cstring(path), argv, envp)


def sys_execveat(
    libos: LibOS, t: Task, dirfd: int, path: int, argv: int, envp: int, flags: int
) -> Result:
    if flags & ~(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW):
        raise SyscallError(errno.EINVAL, "bad execveat flags")
    name = t.mem.read_cstring(path)
    dirfd = dirfd - (1 << 32) if dirfd >= 1 << 31 else dirfd
    if not name:
        if not flags & AT_EMPTY_PATH:
            raise SyscallError(errno.ENOENT, "empty path")
        name = b"/proc/self/fd/%d" % dirfd
    else:
        base = None if name.startswith(b"/") else dirfd_base(libos, t, dirfd)
        if flags & AT_SYMLINK_NOFOLLOW:
            p = t.process
            final = resolve(p.root, p.cwd, name, follow_final=False, dir_fd_base=base,
                            cred=p.cred)  # fmt: skip
            if final.inode.is_symlink:
                raise SyscallError(errno.ELOOP, "the program is a symlink (AT_SYMLINK_NOFOLLOW)")
        if base is not None and dirfd != AT_FDCWD:
            # the kernel would resolve a relative name against a real descriptor; name the
            # file through the LibOS instead, keeping the kernel inside the shadow tree
            name = base.absolute_path().rstrip(b"/") + b"/" + name
    return do_execve(libos, t, name, argv, envp)


def sys_stub(libos: LibOS, t: Task, buffer: int, rsp0: int) -> int:
    """The stub asks for its load plan: map the program, build the stack, tell it where to go."""
    p = t.process
    req = p.pending_exec
    if req is None or buffer != BUFFER_ADDR:
        return libos.missing(t, t.nr)  # not the stub of an accepted exec (the stub exits 127)
    p.pending_exec = None
    p.new_address_space()
    libos.forget_threads(p, t.tid)
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
    plan = LoadPlan()
    prog = req.prog
    bias = random_bias(PIE_BASE) if prog.is_pie else 0
    map_image(plan, prog, prog_fd, bias)
    entry = prog.entry + bias
    interp_bias = 0
    if req.interp is not None and req.interp_fd is not None:
        interp_fd = listener.add_fd(t.notif_id, req.interp_fd, True, send=False)
        interp_bias = random_bias(INTERP_BASE)
        map_image(plan, req.interp, interp_fd, interp_bias)
        plan.syscall("close", interp_fd)
        start = req.interp.entry + interp_bias
    else:
        start = entry
    plan.syscall("close", prog_fd)
    aux = [(k, kernel_aux[k]) for k in INHERITED_AUXV if k in kernel_aux]
    aux += [
        (AT_PHDR, prog.phdr_vaddr + bias),
        (AT_PHENT, prog.phentsize),
        (AT_PHNUM, prog.phnum),
        (AT_PAGESZ, 4096),
        (AT_BASE, interp_bias),
        (AT_FLAGS, 0),
        (AT_ENTRY, entry),
        (AT_SECURE, 0),
    ]
    top = (rsp0 - 256) & ~0xF
    rsp, stack = build_stack(top, req.argv, req.envp, aux, req.execfn)
    if top - rsp > 120 * 1024:
        raise SyscallError(errno.E2BIG, "arguments and environment too large for the stack")
    mem.write(rsp, stack)
    if len(plan.commands) > MAX_COMMANDS:
        raise SyscallError(errno.ENOEXEC, "too many segments")
    words: list[int] = [0, start, rsp, 0, 0, 0, 0, 0]
    for cmd in plan.commands:
        words.extend(a & MASK64 for a in cmd)
        words.append(0)
    mem.write(BUFFER_ADDR, struct.pack(f"<{len(words)}Q", *words))
    assert COMMANDS_OFFSET == 64
    p.exe_path = req.exe_path
    p.argv = req.argv
    p.envp = req.envp
    return len(plan.commands)
