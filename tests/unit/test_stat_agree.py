"""``fstat`` agrees with ``stat``: on every file system, whatever programs do to a file.

A descriptor's stat is its inode's :meth:`~occlum.vfs.inode.Inode.fgetattr` given the host
object behind the descriptor, a name's is :meth:`~occlum.vfs.inode.Inode.getattr`; random
operations (native writes through held descriptors, chmod, utimes, truncation, links,
removals, copy-ups in a union) must never make the two differ on any field.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import libos
from occlum.abi.errors import SyscallError
from occlum.fs.hostfs import HostFs
from occlum.fs.imagefs import ImageFs
from occlum.fs.ramfs import RamFs
from occlum.fs.sefs import SefsFs
from occlum.fs.unionfs import UnionFs
from occlum.instance.image_builder import build_image
from occlum.vfs.inode import Inode, SetAttr
from occlum.vfs.mount import FileSystem

NAMES = st.sampled_from([b"a", b"b", b"c", b"lower"])
KEY = os.urandom(32)


def _quiet(fn: Callable[[], object]) -> None:
    try:
        fn()
    except SyscallError:
        pass


class StatAgreement(RuleBasedStateMachine):
    kind = "ram"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="stat-agree-"))
        self.closers: list[FileSystem] = []
        self.fs = self._make()
        self.root = self.fs.root
        self.held: list[tuple[Inode, int]] = []
        self.writable: set[int] = set()  # descriptors of the file's current contents

    def _make(self) -> FileSystem:
        if self.kind == "ram":
            fs: FileSystem = RamFs()
            fs.root.create(b"lower", 0o644, 0, 0)
            return fs
        if self.kind == "host":
            (self.dir / "host").mkdir()
            (self.dir / "host" / "lower").write_bytes(b"from the host")
            fs = HostFs(str(self.dir / "host"))
            self.closers.append(fs)
            return fs
        sefs = SefsFs(str(self.dir / "sefs"), KEY)
        self.closers.append(sefs)
        if self.kind == "sefs":
            sefs.root.create(b"lower", 0o644, 0, 0)
            return sefs
        src = self.dir / "image"
        src.mkdir()
        (src / "lower").write_bytes(b"from the image")
        image = ImageFs(self.dir / "lower.img", build_image(src, self.dir / "lower.img"))
        self.closers.append(image)
        return UnionFs(sefs, image)

    def teardown(self) -> None:
        for _inode, fd in self.held:
            os.close(fd)
        for fs in self.closers:
            if isinstance(fs, SefsFs):
                fs.close(commit=False)
            else:
                fs.close()  # type: ignore[attr-defined]
        shutil.rmtree(self.dir)

    def _inode(self, name: bytes) -> Inode | None:
        try:
            return self.root.lookup(name)
        except SyscallError:
            return None

    @rule(name=NAMES)
    def create(self, name: bytes) -> None:
        _quiet(lambda: self.root.create(name, 0o644, 0, 0))

    @rule(name=NAMES, writable=st.booleans())
    def open(self, name: bytes, writable: bool) -> None:
        inode = self._inode(name)
        if inode is None or len(self.held) > 6:
            return
        flags = os.O_RDWR if writable else os.O_RDONLY
        try:
            self.held.append((inode, inode.open_host_fd(flags)))
        except SyscallError:
            return
        if writable:
            self.writable.add(self.held[-1][1])

    @rule(i=st.integers(0, 6), data=st.binary(min_size=1, max_size=32), off=st.integers(0, 64))
    def write(self, i: int, data: bytes, off: int) -> None:
        if i < len(self.held):
            try:
                os.pwrite(self.held[i][1], data, off)  # a program's native write
            except OSError:
                pass  # a read-only descriptor

    @rule(name=NAMES, mode=st.sampled_from([0o600, 0o644, 0o755]))
    def chmod(self, name: bytes, mode: int) -> None:
        inode = self._inode(name)
        if inode is not None:
            _quiet(lambda: inode.setattr(SetAttr(mode=mode)))

    @rule(name=NAMES, t=st.integers(0, 2**40))
    def utime(self, name: bytes, t: int) -> None:
        inode = self._inode(name)
        if inode is not None:
            _quiet(lambda: inode.setattr(SetAttr(atime_ns=t, mtime_ns=t + 1)))

    @rule(name=NAMES, size=st.integers(0, 100))
    def truncate(self, name: bytes, size: int) -> None:
        inode = self._inode(name)
        if inode is not None:
            _quiet(lambda: inode.setattr(SetAttr(size=size)))

    @rule(src=NAMES, dst=NAMES)
    def link(self, src: bytes, dst: bytes) -> None:
        inode = self._inode(src)
        if inode is not None:
            _quiet(lambda: self.root.link(dst, inode))

    @rule(name=NAMES)
    def unlink(self, name: bytes) -> None:
        _quiet(lambda: self.root.unlink(name))

    @invariant()
    def native_writes_show(self) -> None:
        # what a program wrote through a descriptor shows, named or not
        for inode, fd in self.held:
            if fd in self.writable:
                host = os.fstat(fd)
                st = inode.fgetattr(host)
                assert (st.size, st.mtime_ns) == (host.st_size, host.st_mtime_ns)

    @invariant()
    def descriptors_agree_with_names(self) -> None:
        for name in (b"a", b"b", b"c", b"lower"):
            inode = self._inode(name)
            if inode is None:
                continue
            for held, fd in self.held:
                if held is inode:
                    assert inode.fgetattr(os.fstat(fd)) == inode.getattr(), name
        # descriptors of one host object agree with each other, named or not (in a union, a
        # descriptor opened before a copy-up holds the lower file's memfd, and once the last
        # name is gone, nothing but the upper file's own descriptors can tell its size)
        for i, (a, fa) in enumerate(self.held):
            ha = os.fstat(fa)
            for b, fb in self.held[i + 1 :]:
                hb = os.fstat(fb)
                if a is b and (ha.st_dev, ha.st_ino) == (hb.st_dev, hb.st_ino):
                    assert a.fgetattr(ha) == b.fgetattr(hb)


class RamAgreement(StatAgreement):
    kind = "ram"


class SefsAgreement(StatAgreement):
    kind = "sefs"


class UnionAgreement(StatAgreement):
    kind = "union"


class HostAgreement(StatAgreement):
    kind = "host"


_settings = settings(max_examples=libos.examples(30), stateful_step_count=20, deadline=None)
TestRamAgreement = RamAgreement.TestCase
TestRamAgreement.settings = _settings
TestSefsAgreement = SefsAgreement.TestCase
TestSefsAgreement.settings = _settings
TestUnionAgreement = UnionAgreement.TestCase
TestUnionAgreement.settings = _settings
TestHostAgreement = HostAgreement.TestCase
TestHostAgreement.settings = _settings
