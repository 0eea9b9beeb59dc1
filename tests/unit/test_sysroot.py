"""The debugger's sysroot (``occlum gdb``): verified copies from an image, at the paths the
dynamic loader names them by; symbolic links followed inside the image; damage refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from occlum.errors import UserError
from occlum.instance.image_builder import build_image
from occlum.instance.sysroot import build_sysroot

PROGRAM = Path("/bin/true")  # a dynamic glibc program: ld.so and libc.so.6
LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")
LDSO = Path("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, str]:
    tree = tmp_path / "tree"
    for host, inside in ((PROGRAM, "bin/prog"), (LIBC, "usr/lib/x86_64-linux-gnu/libc.so.6"),
                         (LDSO, "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")):  # fmt: skip
        (tree / inside).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(host, tree / inside)
    # Debian's layout: /lib a link to usr/lib, PT_INTERP's /lib64 name a link to the loader
    os.symlink("usr/lib", tree / "lib")
    (tree / "lib64").mkdir()
    os.symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", tree / "lib64/ld-linux-x86-64.so.2")
    (tree / "bin/script").write_text("#!/bin/prog -x\n")
    (tree / "bin/prog").chmod(0o755)
    out = tmp_path / "image.img"
    return out, build_image(tree, out)


def test_program_loader_and_libraries_copied_by_their_names(
    image: tuple[Path, str], tmp_path: Path
) -> None:
    img, root_hash = image
    dest = tmp_path / "sysroot"
    copy = build_sysroot(str(img), root_hash, "/bin/prog", dest)
    assert copy == dest / "bin/prog" and copy.read_bytes() == PROGRAM.read_bytes()
    # regular files wherever a link stood (the host must not resolve a link in its own root)
    for name, host in (("lib64/ld-linux-x86-64.so.2", LDSO),
                       ("lib/x86_64-linux-gnu/libc.so.6", LIBC)):  # fmt: skip
        path = dest / name
        assert not path.is_symlink() and path.read_bytes() == host.read_bytes(), name
    # the script's interpreter is what GDB is given
    assert build_sysroot(str(img), root_hash, "/bin/script", tmp_path / "s2") == (
        tmp_path / "s2/bin/prog"
    )


def test_missing_program_and_damaged_image_are_one_line(
    image: tuple[Path, str], tmp_path: Path
) -> None:
    img, root_hash = image
    with pytest.raises(UserError, match=r"cannot debug /bin/nope: no such file in the image"):
        build_sysroot(str(img), root_hash, "/bin/nope", tmp_path / "a")
    data = bytearray(img.read_bytes())
    at = data.index(PROGRAM.read_bytes()[4096:4160])  # a block of the program's contents
    data[at] ^= 1
    img.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"/bin/prog.*fails verification"):
        build_sysroot(str(img), root_hash, "/bin/prog", tmp_path / "b")
