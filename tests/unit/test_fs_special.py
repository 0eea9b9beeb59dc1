"""hostfs confinement, devfs and procfs with a fake process registry."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import RESOLVE_NO_MAGICLINKS, S_IFCHR
from occlum.fs.devfs import DevFs
from occlum.fs.hostfs import HostFs
from occlum.fs.procfs import ProcessInfo, ProcFs
from occlum.fs.ramfs import RamFs
from occlum.vfs.inode import SetAttr
from occlum.vfs.mount import MountTable
from occlum.vfs.open import open_path
from occlum.vfs.path import Location, PathOp, resolve


def read_all(r: Location, path: bytes) -> bytes:
    o = open_path(PathOp(r, r, path), os.O_RDONLY)
    assert o.host_fd is not None
    try:
        return os.read(o.host_fd, 1 << 20)
    finally:
        os.close(o.host_fd)


def test_hostfs_confinement(tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_bytes(b"HOST SECRET")
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "passwd").write_bytes(b"libos passwd")
    (src / "etc" / "secret").write_bytes(b"libos secret")
    (src / "d").mkdir()
    (src / "d" / "to_passwd").symlink_to("/etc/passwd")
    (src / "d" / "up").symlink_to("../../../../secret")
    (src / "d" / "hostabs").symlink_to(str(outside))
    mt = MountTable(HostFs(str(src)))
    r = mt.root()
    assert read_all(r, b"/d/to_passwd") == b"libos passwd"
    for path in (b"/../../../etc/secret", b"/d/../../../../../etc/secret"):
        assert read_all(r, path) == b"libos secret"
    for path in (b"/d/up", b"/d/hostabs", b"/../secret"):
        with pytest.raises(SyscallError) as e:
            read_all(r, path)
        assert e.value.errno == errno.ENOENT
    # a host directory swapped for a symlink after lookup is never walked through
    f = resolve(PathOp(r, r, b"/d"))
    (src / "d").rename(src / "d2")
    (src / "d").symlink_to(str(tmp_path))
    with pytest.raises(SyscallError):
        f.inode.lookup(b"secret")


def test_hostfs_basic_ops(tmp_path: Path) -> None:
    fs = HostFs(str(tmp_path))
    mt = MountTable(RamFs())
    mt.root().inode.mkdir(b"host", 0o755, 0, 0)
    mt.mount(fs, b"/host")
    r = mt.root()
    o = open_path(PathOp(r, r, b"/host/new"), os.O_CREAT | os.O_WRONLY, 0o640)
    assert o.host_fd is not None
    os.write(o.host_fd, b"data")
    os.close(o.host_fd)
    assert (tmp_path / "new").read_bytes() == b"data"
    st = o.location.inode.getattr()
    assert st.dev == fs.dev and st.ino == (tmp_path / "new").stat().st_ino
    o.location.inode.setattr(SetAttr(size=2, mode=0o600))
    assert (tmp_path / "new").read_bytes() == b"da"
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o600
    assert resolve(PathOp(r, r, b"/host/..")).absolute_path() == b"/"
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(SyscallError) as e:
        resolve(PathOp(r, r, b"/host/fifo")).inode.open_host_fd(os.O_RDONLY)
    assert e.value.errno == errno.ENXIO


def test_hostfs_keeps_no_set_id_bit_no_foreign_owner_and_only_user_attributes(
    tmp_path: Path,
) -> None:
    fs = HostFs(str(tmp_path))
    f = fs.root.create(b"f", 0o6755, 0, 0)
    host = tmp_path / "f"
    assert host.stat().st_mode & 0o7777 == 0o755
    f.setattr(SetAttr(mode=0o4711))
    assert host.stat().st_mode & 0o7777 == 0o711
    d = fs.root.mkdir(b"d", 0o755, 0, 0)
    d.setattr(SetAttr(mode=0o6775))  # a directory keeps set-group-id, never set-user-id
    assert (tmp_path / "d").stat().st_mode & 0o7777 == 0o2775
    me = host.stat()
    for change in ({"uid": me.st_uid + 1}, {"gid": me.st_gid + 1}):
        with pytest.raises(SyscallError) as e:
            f.setattr(SetAttr(**change))
        assert e.value.errno == errno.EPERM
    f.setattr(SetAttr(uid=me.st_uid, gid=me.st_gid))  # the ids it has: no change, allowed
    assert (host.stat().st_uid, host.stat().st_gid) == (me.st_uid, me.st_gid)
    f.set_xattr(b"user.k", b"v", 0)
    assert os.getxattr(host, "user.k") == b"v" and f.list_xattr() == [b"user.k"]
    for name in (b"trusted.t", b"security.capability", b"system.posix_acl_access"):
        with pytest.raises(SyscallError) as e:
            f.set_xattr(name, b"\x01", 0)
        assert e.value.errno == errno.EOPNOTSUPP
    assert sorted(os.listxattr(host)) == ["user.k"]
    fs.close()


def test_devfs() -> None:
    mt = MountTable(DevFs())
    r = mt.root()
    null = resolve(PathOp(r, r, b"/null")).inode.getattr()
    assert null.mode & 0o170000 == S_IFCHR and null.rdev == os.makedev(1, 3)
    assert resolve(PathOp(r, r, b"/urandom")).inode.getattr().rdev == os.makedev(1, 9)
    assert len(read_all(r, b"/zero")) == 1 << 20
    assert read_all(r, b"/null") == b""
    o = open_path(PathOp(r, r, b"/full"), os.O_WRONLY)
    assert o.host_fd is not None
    with pytest.raises(OSError) as oe:
        os.write(o.host_fd, b"x")
    assert oe.value.errno == errno.ENOSPC
    os.close(o.host_fd)
    assert resolve(PathOp(r, r, b"/stdin", follow=False)).inode.readlink() == b"/proc/self/fd/0"
    assert resolve(PathOp(r, r, b"/shm")).inode.is_dir


class FakeRegistry:
    def __init__(self, target: Location | None = None) -> None:
        self.target = target

    def current_pid(self) -> int:
        return 7

    def pids(self) -> list[int]:
        return [1, 7]

    def info(self, pid: int) -> ProcessInfo | None:
        if pid not in (1, 7):
            return None
        return ProcessInfo(
            pid=pid, ppid=1 if pid == 7 else 0, tgid=pid, pgid=pid, sid=1, comm=b"prog",
            cmdline=b"prog\0-x\0", environ=b"A=1\0", exe=b"/bin/prog", cwd=b"/tmp", root=b"/",
            fds={0: b"/dev/null", 3: b"pipe:[12]", 4: b"/tmp/t"},
            fd_location=lambda fd: self.target if fd == 4 else None,
        )  # fmt: skip


def test_procfs() -> None:
    root_fs = RamFs()
    for d in (b"proc", b"tmp"):
        root_fs.root.mkdir(d, 0o755, 0, 0)
    mt = MountTable(root_fs)
    r = mt.root()
    t = resolve(PathOp(r, r, b"/tmp")).inode.create(b"t", 0o644, 0, 0)
    reg = FakeRegistry(Location(r.mount, t, resolve(PathOp(r, r, b"/tmp")), b"t"))
    mt.mount(ProcFs(reg, mounts=mt.mounts), b"/proc", source=b"proc")
    assert resolve(PathOp(r, r, b"/proc/self")).absolute_path() == b"/proc/7"
    assert read_all(r, b"/proc/self/cmdline") == b"prog\0-x\0"
    assert read_all(r, b"/proc/7/comm") == b"prog\n"
    stat = read_all(r, b"/proc/self/stat").split()
    assert stat[:6] == [b"7", b"(prog)", b"R", b"1", b"7", b"1"]
    assert b"PPid:\t1" in read_all(r, b"/proc/self/status")
    assert b"/proc proc" in read_all(r, b"/proc/mounts")
    info = read_all(r, b"/proc/self/mountinfo").splitlines()
    assert info[0].split()[:5] == [b"1", b"1", info[0].split()[2], b"/", b"/"]
    fields = info[1].split()
    assert fields[1] == b"1" and fields[4] == b"/proc" and fields[6:9] == [b"-", b"proc", b"proc"]
    assert read_all(r, b"/proc/sys/kernel/ostype") == b"Linux\n"
    assert read_all(r, b"/proc/thread-self/environ") == b"A=1\0"
    exe = resolve(PathOp(r, r, b"/proc/self/exe", follow=False)).inode
    assert exe.is_magic_link and exe.readlink() == b"/bin/prog"
    assert resolve(PathOp(r, r, b"/proc/self/root")).same(r)  # the LibOS root, not the host's
    assert resolve(PathOp(r, r, b"/proc/self/cwd")).absolute_path() == b"/tmp"
    assert resolve(PathOp(r, r, b"/proc/self/fd/4")).inode is t
    with pytest.raises(SyscallError) as e:
        resolve(PathOp(r, r, b"/proc/self/fd/4", resolve_flags=RESOLVE_NO_MAGICLINKS))
    assert e.value.errno == errno.ELOOP
    names = {e.name for e in resolve(PathOp(r, r, b"/proc")).inode.readdir()}
    assert {b"1", b"7", b"self", b"meminfo"} <= names
    assert {e.name for e in resolve(PathOp(r, r, b"/proc/7/fd")).inode.readdir()} == {
        b"0",
        b"3",
        b"4",
    }
    with pytest.raises(SyscallError) as e:
        resolve(PathOp(r, r, b"/proc/9"))
    assert e.value.errno == errno.ENOENT
    with pytest.raises(SyscallError) as e:
        open_path(PathOp(r, r, b"/proc/self/comm"), os.O_WRONLY)
    assert e.value.errno == errno.EACCES


class StateRegistry(FakeRegistry):
    """Process 7 (and each of its threads) is asleep."""

    def info(self, pid: int) -> ProcessInfo | None:
        info = super().info(pid)
        if info is not None:
            info.state_of = lambda _host_dir: "S"
        return info


def test_procfs_state_is_the_registrys() -> None:
    root_fs = RamFs()
    root_fs.root.mkdir(b"proc", 0o755, 0, 0)
    mt = MountTable(root_fs)
    r = mt.root()
    mt.mount(ProcFs(StateRegistry(), mounts=mt.mounts), b"/proc", source=b"proc")
    assert read_all(r, b"/proc/7/stat").split()[2] == b"S"
    assert b"\nState:\tS (sleeping)\n" in read_all(r, b"/proc/7/status")
    # without a host, a thread is the process itself; every letter has Linux's name
    assert b"\nState:\tS (sleeping)\n" in read_all(r, b"/proc/7/task/7/status")
    info = ProcessInfo(pid=3, state_of=lambda _: "Z")
    from occlum.fs import procfs

    assert b"State:\tZ (zombie)" in procfs._status_text(info)
    assert procfs._stat_text(info).split()[2] == b"Z"
    info.state_of = lambda _: "I"
    assert b"State:\tI (idle)" in procfs._status_text(info)


T = TypeVar("T")


def supervisors_net(look: Callable[[], T]) -> T:
    return look()


@pytest.mark.parametrize("host_network", [True, False])
def test_procfs_sys_shows_the_hosts_facts_read_only(host_network: bool) -> None:
    root_fs = RamFs()
    root_fs.root.mkdir(b"proc", 0o755, 0, 0)
    mt = MountTable(root_fs)
    r = mt.root()
    net = supervisors_net if host_network else None
    procfs = ProcFs(FakeRegistry(), mounts=mt.mounts, net_view=net)
    mt.mount(procfs, b"/proc", source=b"proc")
    for name in (b"fs/pipe-max-size", b"kernel/pid_max", b"kernel/tainted"):
        with open(b"/proc/sys/" + name, "rb") as f:
            assert read_all(r, b"/proc/sys/" + name) == f.read()
        with pytest.raises(SyscallError) as e:
            open_path(PathOp(r, r, b"/proc/sys/" + name), os.O_WRONLY)
        assert e.value.errno == errno.EACCES
    assert read_all(r, b"/proc/sys/kernel/hostname") == b"occlum\n"  # the instance's own
    # the net settings only where they can be looked at
    names = {e.name for e in resolve(PathOp(r, r, b"/proc/sys")).inode.readdir()}
    assert (b"net" in names) == host_network
    if host_network:
        conf = {e.name for e in resolve(PathOp(r, r, b"/proc/sys/net/ipv4/conf")).inode.readdir()}
        assert {b"all", b"default", b"lo"} <= conf
    names = {e.name for e in resolve(PathOp(r, r, b"/proc")).inode.readdir()}
    assert (b"config.gz" in names) == os.path.exists("/proc/config.gz")


def test_procfs_sys_net_hides_what_only_root_reads() -> None:
    if not os.path.exists("/proc/sys/net/ipv4/tcp_fastopen_key"):
        pytest.skip("the host has no tcp_fastopen_key")
    assert os.stat("/proc/sys/net/ipv4/tcp_fastopen_key").st_mode & 0o004 == 0
    root_fs = RamFs()
    root_fs.root.mkdir(b"proc", 0o755, 0, 0)
    mt = MountTable(root_fs)
    r = mt.root()
    mt.mount(
        ProcFs(FakeRegistry(), mounts=mt.mounts, net_view=supervisors_net), b"/proc", source=b"proc"
    )
    with pytest.raises(SyscallError) as e:
        resolve(PathOp(r, r, b"/proc/sys/net/ipv4/tcp_fastopen_key"))
    assert e.value.errno == errno.ENOENT
    assert read_all(r, b"/proc/sys/net/ipv4/tcp_syncookies")  # a world-readable neighbour
