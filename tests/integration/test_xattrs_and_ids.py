"""Extended attributes and 32-bit owner ids beyond the ramfs scratch dir: on the root (unionfs,
SEFS over the image) as natively, kept across runs in SEFS's encrypted metadata, copied up from
the image; and on hostfs, where only user.* attributes reach the host file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import libos
from libos import C_DIR, CBuild, Instance

pytestmark = pytest.mark.needs_root

MARKS = {"new": "XATTR-NEW-5c1e", "img": "XATTR-IMG-77d0", "data": "XATTR-DATA-a93b"}


@pytest.mark.parametrize("name", ["xattr", "chown_ids"])
def test_root_behaves_as_natively(
    name: str, c_build: CBuild, c_instance: Instance, tmp_path: Path
) -> None:
    native = libos.run_native([str(c_build.host(f"/bin/{name}")), str(tmp_path / name)])
    assert native.code == 0, native.describe()
    inside = c_instance.run([f"/bin/{name}", f"/root/{name}"])
    assert "Traceback" not in inside.stderr, inside.describe()
    assert inside.stdout == native.stdout, inside.describe()
    assert inside.code == 0


@pytest.fixture()
def tool_instance(tmp_path: Path) -> Instance:
    inst = Instance.new(tmp_path / "instance")
    share = tmp_path / "share"
    share.mkdir()
    (share / "f").write_text("host file\n")
    inst.configure(hostfs=share)
    cfg = inst.config()
    mounts = cfg["mount"]
    assert isinstance(mounts, list)
    mounts.append({"target": "/data", "type": "sefs", "source": "./run/mount/data"})
    inst.write_config(cfg)
    (inst.image / "data").mkdir()
    (inst.image / "etc" / "motd").write_text("from the image\n")
    tool = libos.compile_c(C_DIR / "diag" / "xattr_tool.c", tmp_path / "xattr_tool")
    libos.place_with_dependencies(inst.image, {"/bin/xattr_tool": tool})
    inst.build()
    return inst


def _lines(inst: Instance, *ops: str) -> list[str]:
    res = inst.run(["/bin/xattr_tool", *ops])
    assert res.code == 0 and "Traceback" not in res.stderr, res.describe()
    return res.stdout.splitlines()


def test_attributes_and_large_ids_persist_in_sefs(tool_instance: Instance) -> None:
    inst = tool_instance
    first = _lines(
        inst,
        "make", "/root/new", "set", "/root/new", "user.k", MARKS["new"],
        "chown", "/root/new", "4294967294", "2147483648",
        "set", "/etc/motd", "user.img", MARKS["img"],  # an image file: copied up
        "make", "/data/f", "set", "/data/f", "user.d", MARKS["data"],
        "set", "/data", "trusted.dir", "t",
    )  # fmt: skip
    assert all(line.endswith(": ok") for line in first), first
    second = _lines(
        inst,
        "get", "/root/new", "user.k", "owner", "/root/new", "list", "/etc/motd",
        "get", "/etc/motd", "user.img", "get", "/data/f", "user.d", "get", "/data", "trusted.dir",
    )  # fmt: skip
    assert second == [
        f"get /root/new user.k: {MARKS['new']}",
        "owner /root/new: 4294967294 2147483648",
        "list /etc/motd: user.img",
        f"get /etc/motd user.img: {MARKS['img']}",
        f"get /data/f user.d: {MARKS['data']}",
        "get /data trusted.dir: t",
    ]
    stored = b"".join(p.read_bytes() for p in (inst.path / "run").rglob("*") if p.is_file())
    for mark in MARKS.values():
        assert mark.encode() not in stored  # in the encrypted metadata only
    # an image file that was not copied up has none
    third = _lines(inst, "get", "/bin/xattr_tool", "user.img")
    assert third == ["get /bin/xattr_tool user.img: No data available"]


def test_hostfs_passes_only_user_attributes_to_the_host(
    tool_instance: Instance, tmp_path: Path
) -> None:
    lines = _lines(
        tool_instance,
        "set", "/host/f", "user.h", "from-inside",
        "set", "/host/f", "trusted.t", "x",
        "set", "/host/f", "security.capability", "x",
        "list", "/host/f", "get", "/host/f", "user.h",
    )  # fmt: skip
    assert lines == [
        "set /host/f user.h: ok",
        "set /host/f trusted.t: Operation not supported",
        "set /host/f security.capability: Operation not supported",
        "list /host/f: user.h",
        "get /host/f user.h: from-inside",
    ]
    host = tmp_path / "share" / "f"
    assert os.getxattr(host, "user.h") == b"from-inside"
    assert sorted(os.listxattr(host)) == ["user.h"]
