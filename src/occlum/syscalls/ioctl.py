"""ioctl: native but for the requests the filter sends here (``native.py``'s ioctl rule).

Two kinds reach the supervisor, told apart by the request number alone: Occlum's ``/dev/sgx``
requests (``syscalls/sgx.py``) and the network device requests on a program's Unix socket
(``syscalls/net.py``).  Each handler lets the kernel answer a descriptor that is not its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from occlum.syscalls import net, sgx

if TYPE_CHECKING:
    from occlum.kernel.api import Result
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Task


def sys_ioctl(libos: LibOS, t: Task, fd: int, request: int, arg: int) -> Result:
    if request & 0xFFFFFFFF in sgx.REQUESTS:
        return sgx.sys_ioctl(libos, t, fd, request, arg)
    return net.sys_ioctl(libos, t, fd, request, arg)
