"""SEFS driven by random operations, syncs, remounts and crashes, checked against a real directory.

Reuses the ramfs/hostfs state machine (:mod:`test_fs_model`) and adds what only a persistent
file system has: ``sync`` + remount must give the same tree, and a crash (unmount without a
commit) must give the tree as of the last sync — the model keeps a copy of itself at each sync.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule
from test_fs_model import PATHS, FsModel

from occlum.fs.sefs import SefsFs
from occlum.vfs.mount import FileSystem, MountTable
from occlum.vfs.path import resolve, resolve_parent

KEY = os.urandom(32)
# relative targets only: "/" and ".." above the root differ between the LibOS and the model
TARGETS = st.sampled_from([b"a", b"d", b"e/a", b"nowhere"])


def volume(backing: str) -> str:
    return os.path.join(backing, "vol")


class SefsModel(FsModel):
    make_fs: Callable[[str], FileSystem] = staticmethod(  # type: ignore[assignment]
        lambda d: SefsFs(volume(d), KEY)
    )

    def __init__(self) -> None:
        super().__init__()
        self.synced = tempfile.mkdtemp(prefix="synced-")
        self._save_model()

    def teardown(self) -> None:
        assert isinstance(self.fs, SefsFs)
        self.fs.close(commit=False)
        shutil.rmtree(self.synced)
        super().teardown()

    def _save_model(self) -> None:
        # cp -a keeps hard links, which shutil.copytree would split
        shutil.rmtree(self.synced)
        subprocess.run(["cp", "-a", self.model, self.synced], check=True)

    def _remount(self, commit: bool) -> None:
        assert isinstance(self.fs, SefsFs)
        self.fs.close(commit=commit)
        self.fs = SefsFs(volume(self.backing), KEY)
        self.mt = MountTable(self.fs)
        self.root = self.mt.root()

    @rule()
    def sync(self) -> None:
        self.fs.sync()
        self._save_model()

    @rule()
    def remount(self) -> None:
        self._remount(commit=True)
        self._save_model()

    @rule()
    def crash(self) -> None:
        self._remount(commit=False)
        shutil.rmtree(self.model)
        subprocess.run(["cp", "-a", self.synced, self.model], check=True)

    @rule(p=PATHS, text=TARGETS)
    def symlink(self, p: bytes, text: bytes) -> None:
        def subj() -> None:
            pn = resolve_parent(self.root, self.root, p)
            pn.parent.inode.symlink(pn.name, text, 0, 0)

        self.both(subj, lambda: os.symlink(text, self.m(p)))

    @rule(p=PATHS, mode=st.sampled_from([0o600, 0o644, 0o755, 0o4711, 0o1777]))
    def chmod(self, p: bytes, mode: int) -> None:
        self.both(
            lambda: resolve(self.root, self.root, p).inode.setattr(mode=mode),
            lambda: os.chmod(self.m(p), mode),
        )

    @invariant()
    def same_modes_and_targets(self) -> None:
        base = os.fsencode(self.model)
        for dirpath, dirnames, filenames in os.walk(base):
            for n in dirnames + filenames:
                full = dirpath + b"/" + n
                s = os.lstat(full)
                node = resolve(self.root, self.root, full[len(base) + 1 :], follow_final=False)
                if stat.S_ISLNK(s.st_mode):
                    assert node.inode.readlink() == os.readlink(full)
                else:
                    assert node.inode.getattr().mode == s.st_mode


TestSefs = SefsModel.TestCase
TestSefs.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)
