"""unionfs driven by random operations over a random lower tree, checked against a real directory.

Reuses the ramfs/hostfs state machine (:mod:`test_fs_model`): the model directory starts as a
copy of the lower layer's tree, and every operation must have the same outcome on the union as
on the model, whichever layer the files it touches live in.  The one intended difference:
renaming a directory that has a lower half fails with EXDEV (the model is left alone then).
With a SEFS upper, ``remount`` syncs it and mounts a new union over the same two layers.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from test_fs_model import PATHS, TARGETS, FsModelWithLinksAndModes, outcome

import libos
from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import parse_dirents64
from occlum.fs.hostfs import HostFs
from occlum.fs.imagefs import ImageFs
from occlum.fs.ramfs import RamFs
from occlum.fs.sefs import SefsFs
from occlum.fs.unionfs import UnionFs
from occlum.instance.image_builder import build_image
from occlum.vfs.dirfile import OpenDirectory
from occlum.vfs.mount import FileSystem, MountTable
from occlum.vfs.path import PathOp, resolve, resolve_parent

KEY = os.urandom(32)
# relative targets only: "/" and ".." above the root differ between the LibOS and the model
# a lower entry: absent, a file with these contents, a directory, or a symlink
KINDS = st.one_of(
    st.none(), st.binary(max_size=24), st.just("dir"), st.tuples(st.just("link"), TARGETS)
)
_NAMES = ([b"a", b"b", b"d", b"e"], [b"a", b"b", b"e"], [b"a"])


@st.composite
def lower_trees(draw: st.DrawFn) -> dict[bytes, object]:
    """Paths (in creation order) to what they are, over the names the rules use."""
    out: dict[bytes, object] = {}

    def fill(prefix: bytes, depth: int) -> None:
        for n in _NAMES[depth]:
            kind = draw(KINDS)
            if kind is None:
                continue
            out[prefix + n] = kind
            if kind == "dir" and depth + 1 < len(_NAMES):
                fill(prefix + n + b"/", depth + 1)

    fill(b"", 0)
    return out


def write_tree(root: bytes, tree: dict[bytes, object]) -> None:
    for rel, kind in tree.items():
        p = root + b"/" + rel
        if kind == "dir":
            os.mkdir(p, 0o755)
        elif isinstance(kind, tuple):
            os.symlink(kind[1], p)
        else:
            assert isinstance(kind, bytes)
            with open(p, "wb") as f:
                f.write(kind)


class UnionModel(FsModelWithLinksAndModes):
    upper_kind = "ram"

    def __init__(self) -> None:
        # the union needs the drawn lower tree: FsModel's setup waits for populate()
        RuleBasedStateMachine.__init__(self)
        self.model = tempfile.mkdtemp(prefix="model-")
        self.backing = tempfile.mkdtemp(prefix="subject-")
        self.lower: FileSystem | None = None
        self.upper: FileSystem | None = None

    @initialize(tree=lower_trees(), image=st.booleans())
    def populate(self, tree: dict[bytes, object], image: bool) -> None:
        write_tree(os.fsencode(self.model), tree)
        src = os.path.join(self.backing, "lower")
        os.mkdir(src)
        write_tree(os.fsencode(src), tree)
        if image:
            out = Path(self.backing) / "lower.img"
            self.lower = ImageFs(out, build_image(Path(src), out))
        else:
            self.lower = HostFs(src, readonly=True)
        self._mount(RamFs(mode=0o755) if self.upper_kind == "ram" else self._sefs())

    def _sefs(self) -> SefsFs:
        return SefsFs(os.path.join(self.backing, "sefs"), KEY)

    def _mount(self, upper: FileSystem) -> None:
        assert self.lower is not None
        self.upper = upper
        self.fs = UnionFs(upper, self.lower)
        self.mt = MountTable(self.fs)
        self.root = self.mt.root()

    def teardown(self) -> None:
        if isinstance(self.upper, SefsFs):
            self.upper.close(commit=False)
        if isinstance(self.lower, ImageFs | HostFs):
            self.lower.close()
        shutil.rmtree(self.model)
        shutil.rmtree(self.backing)

    @rule(p=PATHS, q=PATHS)
    def rename(self, p: bytes, q: bytes) -> None:
        def subj() -> None:
            a = resolve_parent(PathOp(self.root, self.root, p))
            b = resolve_parent(PathOp(self.root, self.root, q))
            a.parent.inode.rename(a.name, b.parent.inode, b.name, 0)

        got = outcome(subj)
        if got == errno.EXDEV:
            # the documented difference: only directories with a lower half
            assert stat.S_ISDIR(os.lstat(self.m(p)).st_mode)
            return
        assert got == outcome(lambda: os.rename(self.m(p), self.m(q)))

    @rule(p=PATHS)
    def stat(self, p: bytes) -> None:
        def subj() -> None:
            resolve(PathOp(self.root, self.root, p)).inode.getattr()

        self.both(subj, lambda: os.stat(self.m(p)))

    @invariant()
    def names_resolve_to_their_listing(self) -> None:
        # the inode number readdir reports is the one stat reports
        root = self.root
        for e in root.inode.readdir():
            try:
                loc = resolve(PathOp(root, root, e.name, follow=False))
            except SyscallError:
                raise AssertionError(f"{e.name!r} listed but not found")
            assert loc.inode.ino == e.ino
        # the listing getdents64 hands out (kept, appended to, made anew) is readdir's
        d = OpenDirectory(root)
        listed: list[tuple[bytes, int, int]] = []
        while chunk := d.getdents64(200):
            listed += [(n, i, t) for i, _, t, n in parse_dirents64(chunk)]
        want = [(e.name, e.ino, e.dtype) for e in root.inode.readdir()]
        assert sorted(listed[2:]) == sorted(want)


class SefsUnionModel(UnionModel):
    upper_kind = "sefs"

    @rule()
    def remount(self) -> None:
        assert isinstance(self.upper, SefsFs)
        self.fs.sync()
        self.upper.close()
        self._mount(self._sefs())


_settings = settings(max_examples=libos.examples(40), stateful_step_count=25, deadline=None)
TestUnionRam = UnionModel.TestCase
TestUnionRam.settings = _settings
TestUnionSefs = SefsUnionModel.TestCase
TestUnionSefs.settings = _settings
