"""What ``/proc/<pid>`` shows of a LibOS process (the procfs ProcessRegistry answers)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from occlum.fs.procfs import ProcessInfo

if TYPE_CHECKING:
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Process
    from occlum.vfs.path import Location


def _fd_texts(libos: LibOS, p: Process) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    try:
        names = os.listdir(f"/proc/{p.host_pid}/fd")
    except OSError:
        return out
    for name in names:
        fd = int(name)
        try:
            ref = libos.objects.lookup(p.host_pid, fd)
        except OSError:
            continue
        if ref is not None:
            out[fd] = ref.location.absolute_path()
        else:
            try:
                text = os.readlink(f"/proc/{p.host_pid}/fd/{fd}")
            except OSError:
                continue
            # host objects keep their kernel names (pipe:[N], socket:[N], anon_inode:...)
            out[fd] = text.encode() if not text.startswith("/") else b"anon_inode:[host]"
    return out


def _fd_location(libos: LibOS, p: Process):  # type: ignore[no-untyped-def]
    def get(fd: int) -> Location | None:
        try:
            ref = libos.objects.lookup(p.host_pid, fd)
        except OSError:
            return None
        return ref.location if ref is not None else None

    return get


def _host_stat_fields(host_pid: int) -> tuple[int, int, int]:
    try:
        with open(f"/proc/{host_pid}/stat") as f:
            text = f.read()
        rest = text[text.rindex(")") + 2 :].split()
        return int(rest[2]), int(rest[3]), int(rest[17])  # pgrp, session, num_threads
    except (OSError, ValueError, IndexError):
        return 0, 0, 1


def process_info(libos: LibOS, p: Process) -> ProcessInfo:
    pgrp_host, sid_host, threads = _host_stat_fields(p.host_pid)
    return ProcessInfo(
        pid=p.pid,
        ppid=p.ppid,
        tgid=p.pid,
        pgid=_ns_pid(libos, pgrp_host),
        sid=_ns_pid(libos, sid_host),
        comm=p.comm,
        cmdline=b"".join(a + b"\0" for a in p.argv),
        environ=b"".join(e + b"\0" for e in p.envp),
        exe=p.exe_path,
        cwd=p.cwd.absolute_path(p.root),
        root=p.root.absolute_path(),
        threads=threads,
        fds=_fd_texts(libos, p),
        host_pid=p.host_pid,
        maps=lambda: _maps(p.host_pid),
        fd_location=_fd_location(libos, p),
    )


def _ns_pid(libos: LibOS, host_pid: int) -> int:
    p = libos.procs.get(host_pid)
    if p is not None:
        return p.pid
    return 1 if host_pid == libos.init_pid else 0


def _maps(host_pid: int) -> bytes:
    """The host's maps with host paths hidden: the loader stub and deleted memfds."""
    try:
        with open(f"/proc/{host_pid}/maps", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return b""
    out = []
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith(b"/") and not parts[5].startswith(b"/memfd:"):
            line = b" ".join(parts[:5]) + b" " * 10 + b"[occlum]"
        out.append(line)
    return b"\n".join(out) + b"\n"
