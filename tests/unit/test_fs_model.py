"""ramfs and hostfs driven by random operations, checked against a real host directory."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import libos
from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import parse_dirents64
from occlum.fs.hostfs import HostFs
from occlum.fs.ramfs import RamFs
from occlum.vfs.dirfile import OpenDirectory
from occlum.vfs.inode import SetAttr
from occlum.vfs.mount import FileSystem, MountTable
from occlum.vfs.open import open_path
from occlum.vfs.path import PathOp, resolve, resolve_parent

PATHS = st.sampled_from([b"a", b"b", b"d", b"e", b"d/a", b"d/b", b"d/e", b"d/e/a"])
DATA = st.binary(max_size=64)


def outcome(fn: Callable[[], object]) -> int:
    """0 on success, else the errno: the only thing both sides must agree on."""
    try:
        fn()
    except SyscallError as e:
        return e.errno
    except OSError as e:
        return e.errno or -1
    return 0


class FsModel(RuleBasedStateMachine):
    make_fs: Callable[[str], FileSystem]

    def __init__(self) -> None:
        super().__init__()
        self.model = tempfile.mkdtemp(prefix="model-")
        self.backing = tempfile.mkdtemp(prefix="subject-")
        self.fs = self.make_fs(self.backing)
        self.mt = MountTable(self.fs)
        self.root = self.mt.root()

    def teardown(self) -> None:
        shutil.rmtree(self.model)
        shutil.rmtree(self.backing)
        if isinstance(self.fs, HostFs):
            self.fs.close()

    def m(self, p: bytes) -> bytes:
        return os.fsencode(self.model) + b"/" + p

    def both(self, subject: Callable[[], object], model: Callable[[], object]) -> None:
        assert outcome(subject) == outcome(model)

    def parent(self, p: bytes) -> tuple[object, bytes]:
        pn = resolve_parent(PathOp(self.root, self.root, p))
        return pn.parent.inode, pn.name

    @rule(p=PATHS)
    def create(self, p: bytes) -> None:
        def subj() -> None:
            pn = resolve_parent(PathOp(self.root, self.root, p))
            pn.parent.inode.create(pn.name, 0o644, 0, 0)

        self.both(
            subj, lambda: os.close(os.open(self.m(p), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        )

    @rule(p=PATHS)
    def mkdir(self, p: bytes) -> None:
        def subj() -> None:
            pn = resolve_parent(PathOp(self.root, self.root, p))
            pn.parent.inode.mkdir(pn.name, 0o755, 0, 0)

        self.both(subj, lambda: os.mkdir(self.m(p), 0o755))

    @rule(p=PATHS, data=DATA, off=st.integers(0, 100))
    def write(self, p: bytes, data: bytes, off: int) -> None:
        def subj() -> None:
            o = open_path(PathOp(self.root, self.root, p), os.O_WRONLY)
            assert o.host_fd is not None
            try:
                os.pwrite(o.host_fd, data, off)
            finally:
                os.close(o.host_fd)

        def model() -> None:
            fd = os.open(self.m(p), os.O_WRONLY)
            try:
                os.pwrite(fd, data, off)
            finally:
                os.close(fd)

        self.both(subj, model)

    @rule(p=PATHS, size=st.integers(0, 200))
    def truncate(self, p: bytes, size: int) -> None:
        def subj() -> None:
            loc = resolve(PathOp(self.root, self.root, p))
            if loc.inode.is_dir:
                raise SyscallError(errno.EISDIR)
            loc.inode.setattr(SetAttr(size=size))

        self.both(subj, lambda: os.truncate(self.m(p), size))

    @rule(p=PATHS, q=PATHS)
    def rename(self, p: bytes, q: bytes) -> None:
        def subj() -> None:
            a = resolve_parent(PathOp(self.root, self.root, p))
            b = resolve_parent(PathOp(self.root, self.root, q))
            a.parent.inode.rename(a.name, b.parent.inode, b.name, 0)

        self.both(subj, lambda: os.rename(self.m(p), self.m(q)))

    @rule(p=PATHS, q=PATHS)
    def link(self, p: bytes, q: bytes) -> None:
        def subj() -> None:
            src = resolve(PathOp(self.root, self.root, p, follow=False))
            b = resolve_parent(PathOp(self.root, self.root, q))
            b.parent.inode.link(b.name, src.inode)

        self.both(subj, lambda: os.link(self.m(p), self.m(q), follow_symlinks=False))

    @rule(p=PATHS)
    def unlink(self, p: bytes) -> None:
        def subj() -> None:
            pn = resolve_parent(PathOp(self.root, self.root, p))
            pn.parent.inode.unlink(pn.name)

        self.both(subj, lambda: os.unlink(self.m(p)))

    @rule(p=PATHS)
    def rmdir(self, p: bytes) -> None:
        def subj() -> None:
            pn = resolve_parent(PathOp(self.root, self.root, p))
            pn.parent.inode.rmdir(pn.name)

        self.both(subj, lambda: os.rmdir(self.m(p)))

    def subject_tree(self) -> dict[bytes, tuple[int, int, int, bytes]]:
        out: dict[bytes, tuple[int, int, int, bytes]] = {}

        def walk(prefix: bytes) -> None:
            loc = resolve(PathOp(self.root, self.root, prefix or b"."))
            names = []
            d = OpenDirectory(loc)
            while chunk := d.getdents64(256):
                names += [n for _, _, _, n in parse_dirents64(chunk) if n not in (b".", b"..")]
            for n in names:
                p = prefix + n
                c = resolve(PathOp(self.root, self.root, p, follow=False))
                s = c.inode.getattr()
                content = b""
                if c.inode.is_regular:
                    o = open_path(PathOp(self.root, self.root, p), os.O_RDONLY)
                    assert o.host_fd is not None
                    content = os.read(o.host_fd, 1 << 16)
                    os.close(o.host_fd)
                out[p] = (
                    stat.S_IFMT(s.mode),
                    s.size if not c.inode.is_dir else 0,
                    s.nlink,
                    content,
                )
                if c.inode.is_dir:
                    walk(p + b"/")

        walk(b"")
        return out

    def model_tree(self) -> dict[bytes, tuple[int, int, int, bytes]]:
        out: dict[bytes, tuple[int, int, int, bytes]] = {}
        base = os.fsencode(self.model)
        for dirpath, dirnames, filenames in os.walk(base):
            for n in dirnames + filenames:
                full = dirpath + b"/" + n
                s = os.lstat(full)
                content = b""
                if stat.S_ISREG(s.st_mode):
                    with open(full, "rb") as f:
                        content = f.read()
                size = 0 if stat.S_ISDIR(s.st_mode) else s.st_size
                out[full[len(base) + 1 :]] = (stat.S_IFMT(s.st_mode), size, s.st_nlink, content)
        return out

    @invariant()
    def same_tree(self) -> None:
        assert self.subject_tree() == self.model_tree()


TARGETS = st.sampled_from([b"a", b"d", b"e/a", b"nowhere"])


class FsModelWithLinksAndModes(FsModel):
    """The model plus symlinks and chmod, checking modes and link targets after every step
    (for file systems that keep both: SEFS, the union)."""

    @rule(p=PATHS, text=TARGETS)
    def symlink(self, p: bytes, text: bytes) -> None:
        def subj() -> None:
            pn = resolve_parent(PathOp(self.root, self.root, p))
            pn.parent.inode.symlink(pn.name, text, 0, 0)

        self.both(subj, lambda: os.symlink(text, self.m(p)))

    @rule(p=PATHS, mode=st.sampled_from([0o600, 0o644, 0o755, 0o4711, 0o1777]))
    def chmod(self, p: bytes, mode: int) -> None:
        self.both(
            lambda: resolve(PathOp(self.root, self.root, p)).inode.setattr(SetAttr(mode=mode)),
            lambda: os.chmod(self.m(p), mode),
        )

    @invariant()
    def same_modes_and_targets(self) -> None:
        base = os.fsencode(self.model)
        for dirpath, dirnames, filenames in os.walk(base):
            for n in dirnames + filenames:
                full = dirpath + b"/" + n
                s = os.lstat(full)
                node = resolve(PathOp(self.root, self.root, full[len(base) + 1 :], follow=False))
                if stat.S_ISLNK(s.st_mode):
                    assert node.inode.readlink() == os.readlink(full)
                else:
                    assert node.inode.getattr().mode == s.st_mode


class RamFsModel(FsModel):
    make_fs = staticmethod(lambda _d: RamFs())  # type: ignore[assignment]


class RamFsLettingGoModel(RamFsModel):
    """The same, with every file nobody holds letting its memfd go at any step (the contents
    move into the supervisor and come back at the next use: fs/filecache.py)."""

    @rule()
    def let_go(self) -> None:
        assert isinstance(self.fs, RamFs) and self.fs.cache is not None
        self.fs.cache.evict(0)


class HostFsModel(FsModel):
    make_fs = staticmethod(lambda d: HostFs(d))  # type: ignore[assignment]


_settings = settings(max_examples=libos.examples(40), stateful_step_count=20, deadline=None)
TestRamFs = RamFsModel.TestCase
TestRamFs.settings = _settings
TestRamFsLettingGo = RamFsLettingGoModel.TestCase
TestRamFsLettingGo.settings = _settings
TestHostFs = HostFsModel.TestCase
TestHostFs.settings = _settings
