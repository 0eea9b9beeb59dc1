"""Reading and writing a traced process's memory through ``/proc/PID/mem``.

``process_vm_writev`` refuses read-only pages, ``/proc/PID/mem`` does not (the loader writes
``.bss`` and stacks through it: ``write_forced``). A handle belongs to one address space:
reopen after exec.

A system call's results are written with ``process_vm_writev`` instead: ``/proc/PID/mem``
writes a read-only page too (a stat into a program's code), where Linux's copy to the caller
fails with EFAULT. Arguments are read through ``/proc/PID/mem``, which is five times cheaper
than ``process_vm_readv`` through ctypes; it also reads a PROT_NONE page, so a path that reads
as empty is checked again as the caller may read it (a path on a PROT_NONE page gives EFAULT,
not ENOENT). A struct argument on such a page still reads as its bytes.
"""

from __future__ import annotations

import errno
import os
import select

from occlum.abi.errors import SyscallError
from occlum.platform.native import process_vm_read, process_vm_write

PAGE = 4096
FIRST_READ = 256


class TaskMemory:
    __slots__ = ("_exited", "_readable", "_writable", "fd", "pid")

    def __init__(self, pid: int, pidfd: int = -1) -> None:
        self.pid = pid
        # its pidfd (not owned) is readable once it has exited: a read by pid is the
        # process's only if it still runs afterwards
        self._exited: select.poll | None = None
        if pidfd >= 0:
            self._exited = select.poll()
            self._exited.register(pidfd, select.POLLIN)
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        # pages a result was written to as the process may write: later results go there
        # through /proc/PID/mem, five times cheaper than process_vm_writev through ctypes (a
        # page the program makes read-only afterwards is written all the same)
        self._writable: set[int] = set()
        # pages an empty string was found readable on as the process may read them: glibc's
        # fstat passes the same "" (in its read-only data) every time, and the check costs a
        # process_vm_readv through ctypes, more than the rest of the call (a page the program
        # makes PROT_NONE afterwards still counts as readable, as _writable above)
        self._readable: set[int] = set()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _read_as_caller(self, addr: int, size: int) -> bytes:
        """Bytes the process itself may read (short at an unreadable page; OSError if the first
        is one). A process whose main thread has exited has no memory by its pid for
        ``process_vm_readv`` (ESRCH): the handle of ``/proc/PID/mem`` still reads it.

        ``process_vm_readv`` names the process by pid, which another process may have once
        this one is gone: the bytes are its own only if it still runs afterwards (its pidfd
        is not readable yet), as with any file of ``/proc/PID``."""
        try:
            data = process_vm_read(self.pid, addr, size)
        except OSError as exc:
            if exc.errno == errno.EFAULT:
                raise
            return os.pread(self.fd, size, addr)
        if self._exited is not None and self._exited.poll(0):
            raise SyscallError(errno.ESRCH, "the process has exited")
        return data

    def _check_readable(self, addr: int) -> None:
        """EFAULT unless the process itself may read the byte at ``addr``. Arguments are read
        through ``/proc/PID/mem`` (0.5 us against 2.5 us for ``process_vm_readv`` through
        ctypes, on every served call), which reads a PROT_NONE page too, as zeros where it was
        never written: an empty path is checked again as the caller would read it, once per
        page (a page it may write, it may read)."""
        page = addr >> 12
        if page in self._readable or page in self._writable:
            return
        try:
            data = self._read_as_caller(addr, 1)
        except (OSError, OverflowError):
            data = b""
        if not data:
            raise SyscallError(errno.EFAULT, f"bad string pointer {addr:#x}")
        if len(self._readable) > 4096:
            self._readable.clear()
        self._readable.add(page)

    def read(self, addr: int, size: int) -> bytes:
        if addr == 0 and size:
            raise SyscallError(errno.EFAULT, "NULL pointer")
        try:
            data = os.pread(self.fd, size, addr)
        except (OSError, OverflowError):
            raise SyscallError(errno.EFAULT, f"bad address {addr:#x}")
        if len(data) != size:
            raise SyscallError(errno.EFAULT, f"bad address {addr + len(data):#x}")
        return data

    def read_some(self, addr: int, size: int) -> bytes:
        """Up to ``size`` bytes, stopping early at an unmapped page."""
        out = bytearray()
        while len(out) < size:
            chunk = min(size - len(out), PAGE - (addr + len(out)) % PAGE)
            try:
                data = os.pread(self.fd, chunk, addr + len(out))
            except (OSError, OverflowError):
                break
            out += data
            if len(data) < chunk:
                break
        return bytes(out)

    def read_cstring(self, addr: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string; ENAMETOOLONG past ``limit``, EFAULT on a bad pointer.

        Most strings (paths, arguments) are short: the first read takes at most
        ``FIRST_READ`` bytes (to the page's end), which copies less of the caller's page into
        the supervisor's caches than a read of the whole page, and such a string is returned
        from it as it is; a longer one is read on, a page at a time."""
        if addr == 0:
            raise SyscallError(errno.EFAULT, "NULL string pointer")
        try:
            data = os.pread(self.fd, min(FIRST_READ, PAGE - addr % PAGE), addr)
        except (OSError, OverflowError):
            data = b""
        nul = data.find(b"\0")
        if nul > 0:
            return data[:nul] if nul <= limit else self._too_long()
        if not data:
            raise SyscallError(errno.EFAULT, f"bad string pointer {addr:#x}")
        if nul == 0:
            self._check_readable(addr)
            return b""
        out = bytearray(data)
        pos = addr + len(data)
        while len(out) <= limit:
            try:
                data = os.pread(self.fd, PAGE - pos % PAGE, pos)
            except (OSError, OverflowError):
                data = b""
            if not data:
                raise SyscallError(errno.EFAULT, f"bad string pointer {addr:#x}")
            nul = data.find(b"\0")
            if nul >= 0:
                out += data[:nul]
                break
            out += data
            pos += len(data)
        if len(out) > limit:
            self._too_long()
        return bytes(out)

    @staticmethod
    def _too_long() -> bytes:
        raise SyscallError(errno.ENAMETOOLONG, "string too long")

    def read_cstrings(self, ptrs: list[int], limit: int = 1 << 17) -> list[bytes]:
        """Many NUL-terminated strings (argv, envp), reading each page once: they usually
        share a few pages, and a read of the process's memory costs a system call."""
        pages: dict[int, bytes] = {}
        out: list[bytes] = []
        fd = self.fd
        for addr in ptrs:
            if addr == 0:
                raise SyscallError(errno.EFAULT, "NULL string pointer")
            parts: list[bytes] = []
            size = 0
            pos = addr
            while True:
                page = pos & ~(PAGE - 1)
                data = pages.get(page)
                if data is None:
                    try:
                        data = os.pread(fd, PAGE, page)
                    except (OSError, OverflowError):
                        data = b""
                    if not data:
                        raise SyscallError(errno.EFAULT, f"bad string pointer {addr:#x}")
                    pages[page] = data
                off = pos - page
                nul = data.find(b"\0", off)
                if nul >= 0:
                    parts.append(data[off:nul])
                    break
                parts.append(data[off:])
                size += len(data) - off
                if size > limit:
                    raise SyscallError(errno.E2BIG, "argument too long")
                pos = page + PAGE
            out.append(b"".join(parts))
        return out

    def read_pointer_array(self, addr: int, limit: int = 1 << 17) -> list[int]:
        """A NULL-terminated array of pointers (argv, envp)."""
        ptrs: list[int] = []
        if addr == 0:
            return ptrs
        pos = addr
        while True:
            raw = self.read(pos, 8 * 64) if (pos % PAGE) <= PAGE - 512 else self.read(pos, 8)
            for i in range(0, len(raw), 8):
                p = int.from_bytes(raw[i : i + 8], "little")
                if p == 0:
                    return ptrs
                ptrs.append(p)
                if len(ptrs) > limit:
                    raise SyscallError(errno.E2BIG, "argument list too long")
            pos += len(raw)

    def write(self, addr: int, data: bytes) -> None:
        """A call's result, written as Linux's copy to the caller: EFAULT on a page the
        process may not write (``/proc/PID/mem`` would force it into a read-only or PROT_NONE
        page). By pid, so only while the process runs (its pidfd not readable): a pid is
        given again only after a whole cycle of the pid space, not within one call."""
        if not data:
            return
        if addr == 0:
            raise SyscallError(errno.EFAULT, "NULL pointer")
        first, last = addr >> 12, (addr + len(data) - 1) >> 12
        writable = self._writable
        if first in writable and last in writable:
            self.write_forced(addr, data)
            return
        if self._exited is not None and self._exited.poll(0):
            raise SyscallError(errno.ESRCH, "the process has exited")
        try:
            n = process_vm_write(self.pid, addr, data)
        except OSError as exc:
            if exc.errno != errno.ESRCH:  # ESRCH: its main thread has exited, see above
                raise SyscallError(errno.EFAULT, f"bad address {addr:#x}")
            self.write_forced(addr, data)
            return
        except OverflowError:
            raise SyscallError(errno.EFAULT, f"bad address {addr:#x}")
        if n != len(data):
            raise SyscallError(errno.EFAULT, f"bad address {addr + n:#x}")
        if len(writable) > 4096:
            writable.clear()
        writable.update(range(first, last + 1))

    def write_forced(self, addr: int, data: bytes) -> None:
        """Write through ``/proc/PID/mem``, whatever the page's protection: the loader's own
        writes (stacks, its buffer), never a call's result."""
        if not data:
            return
        if addr == 0:
            raise SyscallError(errno.EFAULT, "NULL pointer")
        try:
            n = os.pwrite(self.fd, data, addr)
        except (OSError, OverflowError):
            raise SyscallError(errno.EFAULT, f"bad address {addr:#x}")
        if n != len(data):
            raise SyscallError(errno.EFAULT, f"bad address {addr + n:#x}")
