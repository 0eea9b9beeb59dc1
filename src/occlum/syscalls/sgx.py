"""``ioctl`` on ``/dev/sgx``: Occlum's SGX device ABI (``fs/dev_fs/dev_sgx`` in Occlum).

The filter sends the ``'s'`` requests below to the supervisor and lets every other ``ioctl``
run natively; a request on a descriptor that is not ``/dev/sgx`` proceeds to the host kernel,
which answers as it would (ENOTTY). The argument structures are Occlum's (x86-64 layout):

* ``SGXIOC_CREATE_REPORT``: ``{const sgx_target_info_t *target_info; const sgx_report_data_t
  *report_data; sgx_report_t *report}`` (24 bytes); target and data may be NULL.
* ``SGXIOC_GET_KEY``: ``{const sgx_key_request_t *key_request; sgx_key_128bit_t *key}``.
* ``SGXIOC_GEN_DCAP_QUOTE``: ``{sgx_report_data_t *report_data; uint32_t *quote_len;
  uint8_t *quote_buf}``; ``*quote_len`` is the buffer's size in, the quote's size out.
* ``SGXIOC_VER_DCAP_QUOTE``: ``{const uint8_t *quote_buf; uint32_t quote_size; uint32_t
  *collateral_expiration_status; sgx_ql_qv_result_t *quote_verification_result; uint32_t
  supplemental_data_size; uint8_t *supplemental_data}`` (48 bytes).

As in Occlum, a NULL output pointer inside a structure is EINVAL; any other pointer that is
not the caller's to read or write is EFAULT; a buffer too small is EINVAL; a request the
simulated CPU refuses (a key of a newer ISVSVN, a report for another enclave) is EINVAL.
"""

from __future__ import annotations

import errno
import functools
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.enclave.keys import load_platform_key
from occlum.enclave.report import (
    KEY_REQUEST_SIZE,
    REPORT_DATA_SIZE,
    REPORT_SIZE,
    TARGET_INFO_SIZE,
    EnclaveIdentity,
    SgxRequestError,
    create_report,
    get_key,
    report_key_id,
    self_target,
    verify_report,
)
from occlum.errors import UserError
from occlum.fs.devfs import SgxNode
from occlum.kernel.api import PROCEED
from occlum.syscalls.common import fd_ref

if TYPE_CHECKING:
    from occlum.enclave.platform_attest import AttestationPlatform
    from occlum.kernel.api import Result
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Task
    from occlum.kernel.spec import EnclaveSpec


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("s") << 8) | nr


_R, _W, _RW = 2, 1, 3  # _IOR, _IOW, _IOWR
SGXIOC_IS_EDMM_SUPPORTED = _ioc(_R, 0, 4)
SGXIOC_GET_EPID_GROUP_ID = _ioc(_R, 1, 4)
SGXIOC_GEN_EPID_QUOTE = _ioc(_RW, 2, 128)
SGXIOC_SELF_TARGET = _ioc(_R, 3, TARGET_INFO_SIZE)
SGXIOC_CREATE_REPORT = _ioc(_RW, 4, 24)
SGXIOC_VERIFY_REPORT = _ioc(_W, 5, REPORT_SIZE)
SGXIOC_DETECT_DCAP_DRIVER = _ioc(_R, 6, 4)
SGXIOC_GET_DCAP_QUOTE_SIZE = _ioc(_R, 7, 4)
SGXIOC_GEN_DCAP_QUOTE = _ioc(_RW, 8, 24)
SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE = _ioc(_R, 9, 4)
SGXIOC_VER_DCAP_QUOTE = _ioc(_RW, 10, 48)
SGXIOC_GET_KEY = _ioc(_RW, 11, 16)

# every request the filter shows the supervisor
REQUESTS: tuple[int, ...] = (
    SGXIOC_IS_EDMM_SUPPORTED, SGXIOC_GET_EPID_GROUP_ID, SGXIOC_GEN_EPID_QUOTE,
    SGXIOC_SELF_TARGET, SGXIOC_CREATE_REPORT, SGXIOC_VERIFY_REPORT, SGXIOC_DETECT_DCAP_DRIVER,
    SGXIOC_GET_DCAP_QUOTE_SIZE, SGXIOC_GEN_DCAP_QUOTE, SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE,
    SGXIOC_VER_DCAP_QUOTE, SGXIOC_GET_KEY,
)  # fmt: skip

# sgx_ql_qv_result_t
QV_RESULT_OK = 0x0000
QV_RESULT_INVALID_SIGNATURE = 0xA004
# a quote larger than this is no quote of ours (ours are about 2.4 KiB)
MAX_QUOTE = 1 << 20


@dataclass(slots=True, frozen=True)
class _Device:
    """The simulated CPU and quoting enclave behind one instance's ``/dev/sgx``."""

    platform_key: bytes
    platform: AttestationPlatform
    identity: EnclaveIdentity
    key_id: bytes  # this boot's report key id


@functools.cache
def _device(spec: EnclaveSpec) -> _Device:
    # the quoting side (X.509, ECDSA) is imported at the first request, not at every start
    from occlum.enclave.platform_attest import load_attestation_platform

    path = Path(spec.platform_key_path)
    try:
        platform_key = load_platform_key(path, create=False)
        platform = load_attestation_platform(path, create=False)
    except UserError as e:
        raise SyscallError(errno.EIO, f"/dev/sgx: {e}")
    identity = EnclaveIdentity(
        spec.mrenclave, spec.mrsigner, spec.isv_prod_id, spec.isv_svn, spec.debuggable
    )
    return _Device(platform_key, platform, identity, report_key_id(os.urandom(32)))


def _ptrs(t: Task, arg: int, fmt: str) -> tuple[int, ...]:
    return struct.unpack(fmt, t.mem.read(arg, struct.calcsize(fmt)))


def _required(ptr: int, what: str) -> int:
    if ptr == 0:
        raise SyscallError(errno.EINVAL, f"/dev/sgx: {what} must not be NULL")
    return ptr


def sys_ioctl(libos: LibOS, t: Task, fd: int, request: int, arg: int) -> Result:
    """The ``'s'`` requests of ``/dev/sgx``; on any other descriptor the host answers."""
    ref = fd_ref(libos, t, fd)
    if ref is None or not isinstance(ref.location.inode, SgxNode):
        return PROCEED
    request &= 0xFFFFFFFF  # the kernel reads the request as an unsigned int
    if request in (SGXIOC_GET_EPID_GROUP_ID, SGXIOC_GEN_EPID_QUOTE):
        libos.warn_once("sgx-epid", "/dev/sgx: EPID attestation is not served (DCAP only)")
        raise SyscallError(errno.ENOSYS, "EPID attestation is not served (DCAP quotes only)")
    if request == SGXIOC_IS_EDMM_SUPPORTED:
        t.mem.write(arg, struct.pack("<i", 0))  # no enclave dynamic memory management
        return 0
    if request == SGXIOC_DETECT_DCAP_DRIVER:
        t.mem.write(arg, struct.pack("<i", 1))  # DCAP quotes are what this device makes
        return 0
    if request == SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE:
        # no TCB collateral exists for a simulated platform: no supplemental data
        t.mem.write(arg, struct.pack("<I", 0))
        return 0
    spec = libos.spec.enclave
    if spec is None:
        raise SyscallError(errno.ENODEV, "/dev/sgx: this LibOS runs no measured enclave")
    dev = _device(spec)
    try:
        return _serve(dev, t, request, arg)
    except SgxRequestError as e:
        raise SyscallError(errno.EINVAL, f"/dev/sgx: {e}")


def _serve(dev: _Device, t: Task, request: int, arg: int) -> int:
    from occlum.enclave.quote import make_quote, quote_size  # loaded with the device

    if request == SGXIOC_SELF_TARGET:
        t.mem.write(arg, self_target(dev.identity))
    elif request == SGXIOC_CREATE_REPORT:
        target_p, data_p, report_p = _ptrs(t, arg, "<QQQ")
        _required(report_p, "the report pointer")
        target = t.mem.read(target_p, TARGET_INFO_SIZE) if target_p else None
        data = t.mem.read(data_p, REPORT_DATA_SIZE) if data_p else None
        report = create_report(dev.platform_key, dev.identity, target, data, dev.key_id)
        t.mem.write(report_p, report)
    elif request == SGXIOC_VERIFY_REPORT:
        verify_report(dev.platform_key, dev.identity, t.mem.read(arg, REPORT_SIZE))
    elif request == SGXIOC_GET_KEY:
        request_p, key_p = _ptrs(t, arg, "<QQ")
        key_request = t.mem.read(_required(request_p, "key_request"), KEY_REQUEST_SIZE)
        _required(key_p, "the key pointer")
        t.mem.write(key_p, get_key(dev.platform_key, dev.identity, key_request))
    elif request == SGXIOC_GET_DCAP_QUOTE_SIZE:
        t.mem.write(arg, struct.pack("<I", quote_size(dev.platform)))
    elif request == SGXIOC_GEN_DCAP_QUOTE:
        data_p, len_p, buf_p = _ptrs(t, arg, "<QQQ")
        (room,) = struct.unpack("<I", t.mem.read(len_p, 4))
        data = t.mem.read(data_p, REPORT_DATA_SIZE)
        size = quote_size(dev.platform)
        if room < size:
            raise SyscallError(errno.EINVAL, f"/dev/sgx: the quote buffer is {room} bytes, "
                               f"a quote {size}")  # fmt: skip
        quote = make_quote(dev.platform, dev.identity.body(data))
        t.mem.write(buf_p, quote)
        t.mem.write(len_p, struct.pack("<I", len(quote)))
    elif request == SGXIOC_VER_DCAP_QUOTE:
        _ver_dcap_quote(dev, t, arg)
    else:
        raise SyscallError(errno.ENOSYS, f"/dev/sgx: unknown request {request:#x}")
    return 0


def _ver_dcap_quote(dev: _Device, t: Task, arg: int) -> None:
    from occlum.enclave.quote import MalformedQuote, QuoteError, QuotePolicy, verify_quote

    quote_p, size, status_p, result_p, supp_size, supp_p = struct.unpack(
        "<QI4xQQI4xQ", t.mem.read(arg, 48)
    )
    if size > MAX_QUOTE:
        raise SyscallError(errno.EINVAL, f"/dev/sgx: a quote of {size} bytes")
    quote = t.mem.read(quote_p, size)
    _required(status_p, "collateral_expiration_status")
    _required(result_p, "quote_verification_result")
    try:
        verify_quote(quote, QuotePolicy(dev.platform.root_pem))
        result = QV_RESULT_OK
    except MalformedQuote as e:
        raise SyscallError(errno.EINVAL, f"/dev/sgx: {e}")
    except QuoteError:
        result = QV_RESULT_INVALID_SIGNATURE
    if supp_p:
        t.mem.read(supp_p, supp_size)  # the buffer must be the caller's, though nothing fits
    t.mem.write(status_p, struct.pack("<I", 0))  # collateral never expires: there is none
    t.mem.write(result_p, struct.pack("<I", result))
