"""The kernel's registry of donated host objects: lookup by identity, pruning."""

from __future__ import annotations

import os
from pathlib import Path

from occlum.fs.ramfs import RamFs
from occlum.kernel import objects
from occlum.kernel.objects import FileRef, ObjectRegistry
from occlum.vfs.mount import MountTable


def _key(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def test_lookup_follows_identity_not_descriptor_number(tmp_path: Path) -> None:
    reg = ObjectRegistry()
    loc = MountTable(RamFs()).root()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    reg.register(fd, FileRef(loc))
    dup = os.dup(fd)
    ref = reg.lookup(os.getpid(), dup)
    assert ref is not None and ref.location is loc
    other = os.open("/dev/null", os.O_RDONLY)
    assert reg.lookup(os.getpid(), other) is None
    for d in (fd, dup, other):
        os.close(d)


def test_registry_prunes_objects_nobody_holds(tmp_path: Path) -> None:
    reg = ObjectRegistry()
    loc = MountTable(RamFs()).root()
    held: list[int] = []
    live: set[tuple[int, int]] = set()
    reg.live_keys = lambda: set(live)
    reg.prune_at = 8
    for i in range(20):
        p = tmp_path / f"f{i}"
        p.write_text("x")
        fd = os.open(p, os.O_RDONLY)
        if i % 2 == 0:
            held.append(fd)
            live.add(_key(fd))
        reg.register(fd, FileRef(loc))
        if i % 2:
            os.close(fd)
    # every entry still known is one a process holds, plus those registered since the last prune
    assert len(reg._by_key) < 20
    for fd in held:
        assert reg.lookup(os.getpid(), fd) is not None
        os.close(fd)
    assert reg.prune_at == objects.PRUNE_AT  # the next pruning waits for the usual threshold
