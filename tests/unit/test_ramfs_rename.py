"""ramfs rename: the errors Linux gives before it looks at the kinds of source and target."""

from __future__ import annotations

import errno

import pytest

from occlum.abi.errors import SyscallError
from occlum.fs.ramfs import RamFs


def test_a_file_renamed_onto_its_own_directory_is_enotempty() -> None:
    # rename("d/a", "d"): the target is above the source (lock_rename's trap), ENOTEMPTY,
    # before the EISDIR of a file over a directory
    fs = RamFs()
    d = fs.root.mkdir(b"d", 0o755, 0, 0)
    d.create(b"a", 0o644, 0, 0)
    with pytest.raises(SyscallError) as e:
        d.rename(b"a", fs.root, b"d", 0)
    assert e.value.errno == errno.ENOTEMPTY
    fs.root.mkdir(b"e", 0o755, 0, 0)
    with pytest.raises(SyscallError) as e:
        d.rename(b"a", fs.root, b"e", 0)  # an unrelated directory: the kinds decide
    assert e.value.errno == errno.EISDIR
