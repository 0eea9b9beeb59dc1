"""The machine as a program sees it: uname, sysinfo, hostname."""

from __future__ import annotations

import errno
import os
import struct
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.platform import native
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


_meminfo_fd = -1  # /proc/meminfo, kept open: each pread at 0 makes it afresh


def _meminfo(*fields: bytes) -> list[int]:
    """/proc/meminfo fields, in bytes (0 if absent), from one read. Java asks sysinfo for the
    memory left whenever it weighs another compiler thread: found in the bytes, not parsed
    whole (4 us against 110)."""
    global _meminfo_fd
    if _meminfo_fd < 0:
        _meminfo_fd = os.open("/proc/meminfo", os.O_RDONLY | os.O_CLOEXEC)
    raw = b"\n" + os.pread(_meminfo_fd, 8192, 0)
    out = []
    for field in fields:
        at = raw.find(b"\n" + field + b":")
        start = at + len(field) + 2
        out.append(0 if at < 0 else int(raw[start : raw.index(b"k", start)]) * 1024)
    return out


def sys_sysinfo(libos: LibOS, t: Task, buf: int) -> int:
    mem_total, available = _meminfo(b"MemTotal", b"MemAvailable")
    # the instance shares the host's boot time and load: the host's own figures, as Linux
    # makes them (the uptime rounded up: int(CLOCK_BOOTTIME) was a second short but at a
    # whole second; loads in 1/65536ths), from one call instead of a clock and getloadavg
    uptime, loads = native.uptime_and_loads()
    total = min(mem_total, libos.spec.user_space_size) or mem_total
    free = min(available, total)
    used = libos.limits.memory_used()  # by all the programs together (memory cgroup)
    if used is not None:
        free = max(0, min(free, total - used))
    procs = max(len(libos.proctable.procs), 1)
    data = struct.pack(
        "<q3Q6QH6xQQI",
        uptime,
        *loads,
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
