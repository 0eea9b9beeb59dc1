"""SEFS driven by random operations, syncs, remounts and crashes, checked against a real directory.

Reuses the ramfs/hostfs state machine (:mod:`test_fs_model`) and adds what only a persistent
file system has: ``sync`` + remount must give the same tree, and a crash (unmount without a
commit) must give the tree as of the last sync — the model keeps a copy of itself at each sync.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable

from hypothesis import settings
from hypothesis.stateful import rule
from test_fs_model import FsModelWithLinksAndModes

import libos
from occlum.fs.sefs import SefsFs
from occlum.vfs.mount import FileSystem, MountTable

KEY = os.urandom(32)
# relative targets only: "/" and ".." above the root differ between the LibOS and the model


def volume(backing: str) -> str:
    return os.path.join(backing, "vol")


class SefsModel(FsModelWithLinksAndModes):
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


TestSefs = SefsModel.TestCase
TestSefs.settings = settings(max_examples=libos.examples(80), stateful_step_count=30, deadline=None)
