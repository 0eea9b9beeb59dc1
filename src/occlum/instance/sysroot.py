"""A debugger's sysroot for a program of a built instance (``occlum gdb``): verified copies,
from the instance's root image, of the program, its ELF interpreter and the shared libraries
the dynamic loader will load, each at the path the loader names it by.

GDB finds a program's libraries through the dynamic loader's link map (``r_debug``), whose
names are the paths ld.so opened inside the instance (``/lib/x86_64-linux-gnu/libc.so.6``),
and the loader itself by ``PT_INTERP``; with ``set sysroot DIR`` it opens ``DIR`` + that
path. Nothing else of the host may stand in for them: a host file with the same name may be
another build, so every file here is read through :class:`~occlum.fs.imagefs.ImageFs`,
which checks its Merkle tree against the measured root hash (a damaged image is refused with
the file's name). Symbolic links are followed inside the image and each path gets the file's
contents (never a link that the host would resolve in its own root).

The libraries are found as :mod:`occlum.instance.elfdeps` finds them for ``copy_bom``
(``DT_NEEDED`` transitively, ``RPATH``/``RUNPATH``, the default directories), asked of the
image instead of the host; a library present under several of the default directories is
copied under each, since the loader's cache of the image may name any of them. A library
the program opens with ``dlopen`` is not found this way: GDB then says it cannot load its
symbols.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from occlum.abi.errors import SyscallError
from occlum.errors import UserError
from occlum.fs.imagefs import ImageFile, ImageFs, ImageSymlink
from occlum.instance.elfdeps import DEFAULT_DIRS, ElfInfo, LibraryResolver, read_elf_info
from occlum.vfs.inode import Inode

__all__ = ["build_sysroot"]

SYMLINK_BUDGET = 40  # as Linux's path walk
SCRIPT_DEPTH = 4  # #! interpreters followed, as Linux's binfmt_script recursion limit


def _absolute(path: str) -> str:
    """``path`` from the image's root, normalized (and never ``//``, which POSIX keeps)."""
    return os.path.normpath("/" + path.lstrip("/"))


class _ImageFiles:
    """Paths of the image looked up (symlinks followed inside it) and copied under ``dest``."""

    def __init__(self, fs: ImageFs, dest: Path) -> None:
        self.fs = fs
        self.dest = dest
        self.copied: dict[str, bool] = {}  # path -> whether it is a regular file now in dest

    def _resolve(self, path: str) -> Inode | None:
        parts = [p for p in path.split("/") if p]
        stack: list[Inode] = [self.fs.root]
        budget = SYMLINK_BUDGET
        while parts:
            name = parts.pop(0)
            if name == ".":
                continue
            if name == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            try:
                node = stack[-1].lookup(name.encode())
            except SyscallError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    return None
                raise
            if isinstance(node, ImageSymlink):
                budget -= 1
                if budget < 0:
                    return None
                target = os.fsdecode(node.readlink())
                if target.startswith("/"):
                    stack = [self.fs.root]
                parts = [p for p in target.split("/") if p] + parts
                continue
            stack.append(node)
        return stack[-1]

    def copy(self, path: str) -> bool:
        """Copy the regular file the image has at ``path`` to ``dest`` + ``path``."""
        path = _absolute(path)
        done = self.copied.get(path)
        if done is not None:
            return done
        node = self._resolve(path)
        ok = isinstance(node, ImageFile)
        if isinstance(node, ImageFile):
            out = self.dest / path.lstrip("/")
            out.parent.mkdir(parents=True, exist_ok=True)
            src = node.open_host_fd(os.O_RDONLY)  # verified against the image's Merkle tree
            try:
                with os.fdopen(src, "rb", closefd=False) as f, open(out, "wb") as g:
                    while chunk := f.read(1 << 20):
                        g.write(chunk)
            finally:
                os.close(src)
            os.chmod(out, stat.S_IRUSR | stat.S_IXUSR)
        self.copied[path] = ok
        return ok


class _ImageResolver(LibraryResolver):
    """ld.so's search, asked of the image (through copies in the sysroot)."""

    def __init__(self, files: _ImageFiles) -> None:
        super().__init__(cache={}, conf_dirs=())
        self.files = files

    def info(self, path: str) -> ElfInfo | None:
        if not self.files.copy(path):
            return None
        return read_elf_info(str(self.files.dest / path.lstrip("/")))

    def _accept(self, path: str, main: ElfInfo) -> bool:
        info = self.info(path)
        return (
            info is not None and info.elf_class == main.elf_class and info.machine == main.machine
        )


def _executable(files: _ImageFiles, program: str) -> str:
    """The ELF file the kernel would run for ``program``: a script's ``#!`` interpreter,
    followed (GDB debugs the interpreter, as natively)."""
    program = _absolute(program)
    for _ in range(SCRIPT_DEPTH):
        if not files.copy(program):
            raise UserError(f"cannot debug {program}: no such file in the image")
        with open(files.dest / program.lstrip("/"), "rb") as f:
            first = f.readline(256)
        if not first.startswith(b"#!") or not first[2:].split():
            return program
        program = os.fsdecode(first[2:].split()[0])
    raise UserError(f"cannot debug {program}: too many #! interpreters")


def build_sysroot(
    image: str, root_hash: str, program: str, dest: Path, key: bytes | None = None
) -> Path:
    """Fill ``dest`` with the verified files ``program`` (a path inside the image) needs to be
    debugged; returns the program's copy. ``key``: the key of an encrypted image."""
    try:
        fs = ImageFs(image, root_hash, key)
    except SyscallError as exc:
        raise UserError(
            f"the root image {image} cannot be read: {exc.why or exc} "
            "(corrupted or changed since `occlum build`)"
        )
    try:
        files = _ImageFiles(fs, dest)
        try:
            program = _executable(files, program)
            deps = _ImageResolver(files).find_dependencies(program)
            for found in deps.paths:  # every default directory's copy of each library too
                for d in DEFAULT_DIRS:
                    files.copy(f"{d}/{os.path.basename(found)}")
        except SyscallError as exc:
            raise UserError(f"cannot read {program}'s files from the image: {exc.why or exc}")
        return dest / program.lstrip("/")
    finally:
        fs.close()
