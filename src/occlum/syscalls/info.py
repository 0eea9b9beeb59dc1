"""The machine as a program sees it: uname, sysinfo, hostname."""

from __future__ import annotations

import errno
import os
import struct
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.vfs.cred import CAP_SYS_ADMIN

if TYPE_CHECKING:
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Task

UTS_FIELD = 65


_HOST = os.uname()
_utsname: tuple[bytes, bytes] = (b"", b"")  # (hostname, packed struct utsname)


def sys_uname(libos: LibOS, t: Task, buf: int) -> int:
    global _utsname
    if _utsname[0] != libos.hostname:
        fields = (b"Linux", libos.hostname, _HOST.release.encode(), _HOST.version.encode(),
                  b"x86_64", b"(none)")  # fmt: skip
        packed = b"".join(f[: UTS_FIELD - 1].ljust(UTS_FIELD, b"\0") for f in fields)
        _utsname = (libos.hostname, packed)
    t.mem.write(buf, _utsname[1])
    return 0


def sys_sethostname(libos: LibOS, t: Task, name: int, length: int) -> int:
    if not 0 <= length <= 64:
        raise SyscallError(errno.EINVAL, "name too long")
    if not t.cred.capable(CAP_SYS_ADMIN):
        raise SyscallError(errno.EPERM, "setting the host name needs CAP_SYS_ADMIN")
    libos.hostname = t.mem.read(name, length)
    return 0


def sys_sysinfo(libos: LibOS, t: Task, buf: int) -> int:
    with open("/proc/meminfo") as f:
        mem = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:]}
    with open("/proc/uptime") as f:
        uptime = int(float(f.read().split()[0]))
    loads = os.getloadavg()
    total = min(mem.get("MemTotal", 0), libos.spec.user_space_size) or mem.get("MemTotal", 0)
    free = min(mem.get("MemAvailable", 0), total)
    used = libos.limits.memory_used()  # by all the programs together (memory cgroup)
    if used is not None:
        free = max(0, min(free, total - used))
    procs = max(len(libos.proctable.procs), 1)
    data = struct.pack(
        "<q3Q6QH6xQQI",
        uptime,
        *(int(x * 65536) for x in loads),
        total,
        free,
        0,
        0,
        0,
        0,
        procs,
        0,
        0,
        1,
    )
    t.mem.write(buf, data.ljust(112, b"\0"))
    return 0
