"""SGX reports and EGETKEY, simulated: the structures of the SGX SDK's ``sgx_report.h`` and
``sgx_key.h`` byte for byte, computed from the enclave's identity and the platform key.

On SGX, ``EREPORT`` writes a 432-byte report (a 384-byte body, a key id and an AES-CMAC) whose
MAC key is the *report key of the target enclave*, which only the CPU and that enclave can
derive (``EGETKEY`` with ``KEYNAME=REPORT``); ``EGETKEY`` also gives seal keys bound to
MRENCLAVE or MRSIGNER. Here the CPU's fused secret is the platform key (``keys.py``), and the
derivations are HKDF over it, so the same rules hold on one platform: a report verifies only
on the platform and for the target it was made for; a seal key is the same across runs and
rebuilds exactly as its policy says.

Layouts (little-endian integers; offsets within each structure):

* ``sgx_report_body_t`` (384): cpu_svn[16]@0, misc_select u32@16, isv_ext_prod_id[16]@32,
  attributes {flags u64, xfrm u64}@48, mr_enclave[32]@64, mr_signer[32]@128,
  config_id[64]@192, isv_prod_id u16@256, isv_svn u16@258, config_svn u16@260,
  isv_family_id[16]@304, report_data[64]@320; reserved bytes zero.
* ``sgx_report_t`` (432): body, key_id[32]@384, mac[16]@416.
* ``sgx_target_info_t`` (512): mr_enclave[32]@0, attributes[16]@32, config_svn u16@50,
  misc_select u32@52, config_id[64]@64.
* ``sgx_key_request_t`` (512): key_name u16@0, key_policy u16@2, isv_svn u16@4, cpu_svn[16]@8,
  attribute_mask[16]@24, key_id[32]@40, misc_mask u32@72, config_svn u16@76; the reserved
  bytes (@6, @78..512) must be zero.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from occlum.crypto.cmac import aes_cmac
from occlum.crypto.kdf import derive_key

REPORT_BODY_SIZE = 384
REPORT_SIZE = 432
TARGET_INFO_SIZE = 512
KEY_REQUEST_SIZE = 512
REPORT_DATA_SIZE = 64
KEY_SIZE = 16

# SGX attribute flags: INIT is set in every report of an initialized enclave
ATTR_INIT = 1 << 0
ATTR_DEBUG = 1 << 1
ATTR_MODE64BIT = 1 << 2
ATTR_PROVISIONKEY = 1 << 4
ATTR_EINITTOKENKEY = 1 << 5
# XFRM: x87 and SSE state, the least an enclave may enable (we enable nothing beyond it)
XFRM_DEFAULT = 0x3
# the simulated CPU has no microcode security version: CPUSVN is all zero
CPU_SVN = bytes(16)

KEYNAME_EINITTOKEN, KEYNAME_PROVISION, KEYNAME_PROVISION_SEAL = 0, 1, 2
KEYNAME_REPORT, KEYNAME_SEAL = 3, 4
KEYPOLICY_MRENCLAVE, KEYPOLICY_MRSIGNER, KEYPOLICY_NOISVPRODID = 0x1, 0x2, 0x4
KEYPOLICY_CONFIGID, KEYPOLICY_ISVFAMILYID, KEYPOLICY_ISVEXTPRODID = 0x8, 0x10, 0x20
_KEYPOLICY_ALL = 0x3F

_EGETKEY_LABEL = b"occlum-python/sim EGETKEY v1 "


class SgxRequestError(ValueError):
    """A request the simulated CPU refuses (SGX's SGX_ERROR_INVALID_*): the message says why."""


@dataclass(slots=True, frozen=True)
class ReportBody:
    """The fields of ``sgx_report_body_t`` that SGX sets (the others are zero)."""

    mrenclave: bytes
    mrsigner: bytes
    isv_prod_id: int
    isv_svn: int
    flags: int
    xfrm: int = XFRM_DEFAULT
    misc_select: int = 0
    cpu_svn: bytes = CPU_SVN
    config_svn: int = 0
    config_id: bytes = bytes(64)
    isv_ext_prod_id: bytes = bytes(16)
    isv_family_id: bytes = bytes(16)
    report_data: bytes = bytes(REPORT_DATA_SIZE)

    @property
    def debug(self) -> bool:
        return bool(self.flags & ATTR_DEBUG)

    def pack(self) -> bytes:
        out = bytearray(REPORT_BODY_SIZE)
        out[0:16] = self.cpu_svn
        struct.pack_into("<I", out, 16, self.misc_select)
        out[32:48] = self.isv_ext_prod_id
        struct.pack_into("<QQ", out, 48, self.flags, self.xfrm)
        out[64:96] = self.mrenclave
        out[128:160] = self.mrsigner
        out[192:256] = self.config_id
        struct.pack_into("<HHH", out, 256, self.isv_prod_id, self.isv_svn, self.config_svn)
        out[304:320] = self.isv_family_id
        out[320:384] = self.report_data
        return bytes(out)

    @classmethod
    def unpack(cls, raw: bytes) -> ReportBody:
        if len(raw) != REPORT_BODY_SIZE:
            raise ValueError(f"a report body is {REPORT_BODY_SIZE} bytes, not {len(raw)}")
        flags, xfrm = struct.unpack_from("<QQ", raw, 48)
        prod, svn, config_svn = struct.unpack_from("<HHH", raw, 256)
        return cls(
            mrenclave=raw[64:96],
            mrsigner=raw[128:160],
            isv_prod_id=prod,
            isv_svn=svn,
            flags=flags,
            xfrm=xfrm,
            misc_select=struct.unpack_from("<I", raw, 16)[0],
            cpu_svn=raw[0:16],
            config_svn=config_svn,
            config_id=raw[192:256],
            isv_ext_prod_id=raw[32:48],
            isv_family_id=raw[304:320],
            report_data=raw[320:384],
        )


@dataclass(slots=True, frozen=True)
class EnclaveIdentity:
    """What the simulated CPU knows of the running enclave (from its verified SIGSTRUCT)."""

    mrenclave: bytes
    mrsigner: bytes
    isv_prod_id: int
    isv_svn: int
    debuggable: bool

    @property
    def flags(self) -> int:
        return ATTR_INIT | ATTR_MODE64BIT | (ATTR_DEBUG if self.debuggable else 0)

    def body(self, report_data: bytes = bytes(REPORT_DATA_SIZE)) -> ReportBody:
        return ReportBody(
            self.mrenclave, self.mrsigner, self.isv_prod_id, self.isv_svn, self.flags,
            report_data=report_data,
        )  # fmt: skip


def self_target(identity: EnclaveIdentity) -> bytes:
    """``sgx_target_info_t`` of the enclave itself (``sgx_self_target``)."""
    out = bytearray(TARGET_INFO_SIZE)
    out[0:32] = identity.mrenclave
    struct.pack_into("<QQ", out, 32, identity.flags, XFRM_DEFAULT)
    return bytes(out)


def _report_key(platform_key: bytes, target_mrenclave: bytes, key_id: bytes) -> bytes:
    return derive_key(platform_key, _EGETKEY_LABEL + b"REPORT", target_mrenclave + key_id)[:16]


def create_report(
    platform_key: bytes,
    identity: EnclaveIdentity,
    target_info: bytes | None,
    report_data: bytes | None,
    key_id: bytes,
) -> bytes:
    """``EREPORT``: the 432-byte report of ``identity`` for the enclave of ``target_info``
    (None: the enclave itself), MACed with that target's report key. ``key_id`` (32 bytes) is
    the platform's current report key id."""
    if report_data is None:
        report_data = bytes(REPORT_DATA_SIZE)
    if len(report_data) != REPORT_DATA_SIZE or len(key_id) != 32:
        raise ValueError("report data is 64 bytes and a key id 32")
    target = self_target(identity) if target_info is None else target_info
    if len(target) != TARGET_INFO_SIZE:
        raise ValueError(f"a target info is {TARGET_INFO_SIZE} bytes")
    body = identity.body(report_data).pack()
    mac = aes_cmac(_report_key(platform_key, target[0:32], key_id), body)
    return body + key_id + mac


def verify_report(platform_key: bytes, identity: EnclaveIdentity, report: bytes) -> ReportBody:
    """``sgx_verify_report``: the report was made on this platform for this enclave (its MAC
    under our report key holds). Raises ``SgxRequestError`` otherwise."""
    if len(report) != REPORT_SIZE:
        raise SgxRequestError(f"a report is {REPORT_SIZE} bytes")
    body, key_id, mac = report[:384], report[384:416], report[416:432]
    expected = aes_cmac(_report_key(platform_key, identity.mrenclave, key_id), body)
    if not hmac.compare_digest(mac, expected):
        raise SgxRequestError("the report's MAC does not verify (not made for this enclave)")
    return ReportBody.unpack(body)


def get_key(platform_key: bytes, identity: EnclaveIdentity, request: bytes) -> bytes:
    """``EGETKEY``: the 128-bit key ``request`` (an ``sgx_key_request_t``) asks for.

    SEAL keys mix the identity the policy selects (MRENCLAVE, MRSIGNER, with ISVPRODID unless
    ``NOISVPRODID``), the request's ISVSVN and CPUSVN (which may not exceed the enclave's and
    the platform's: a key of an older version can be derived, never of a newer one), the
    masked attributes and the key id. REPORT keys are this enclave's report key. The
    provisioning and launch keys need attributes no enclave here has."""
    if len(request) != KEY_REQUEST_SIZE:
        raise SgxRequestError(f"a key request is {KEY_REQUEST_SIZE} bytes")
    name, policy, isv_svn, reserved1 = struct.unpack_from("<HHHH", request, 0)
    cpu_svn = request[8:24]
    attribute_mask = struct.unpack_from("<QQ", request, 24)
    key_id = request[40:72]
    misc_mask, config_svn = struct.unpack_from("<IH", request, 72)
    if reserved1 or any(request[78:]):
        raise SgxRequestError("the key request's reserved bytes are not zero")
    if policy & ~_KEYPOLICY_ALL:
        raise SgxRequestError(f"unknown key policy bits {policy:#x}")
    if name == KEYNAME_REPORT:
        # the key EREPORT MACs this enclave's reports with: the enclave can check them itself
        return _report_key(platform_key, identity.mrenclave, key_id)
    if name in (KEYNAME_PROVISION, KEYNAME_PROVISION_SEAL):
        raise SgxRequestError("provisioning keys need the PROVISIONKEY attribute")
    if name == KEYNAME_EINITTOKEN:
        raise SgxRequestError("launch keys need the EINITTOKENKEY attribute")
    if name != KEYNAME_SEAL:
        raise SgxRequestError(f"unknown key name {name}")
    if isv_svn > identity.isv_svn:
        raise SgxRequestError(f"ISVSVN {isv_svn} is above the enclave's {identity.isv_svn}")
    if any(cpu_svn):  # the platform's CPUSVN is zero
        raise SgxRequestError("CPUSVN is above the platform's")
    if config_svn > 0:
        raise SgxRequestError(f"CONFIGSVN {config_svn} is above the enclave's 0")
    # the SDK always masks in INIT|DEBUG and the rest it asks for (sgx_seal_data's 0xFF..0B)
    flags = identity.flags & attribute_mask[0]
    xfrm = XFRM_DEFAULT & attribute_mask[1]
    material = struct.pack("<HHH", name, policy, isv_svn) + cpu_svn
    material += identity.mrenclave if policy & KEYPOLICY_MRENCLAVE else bytes(32)
    material += identity.mrsigner if policy & KEYPOLICY_MRSIGNER else bytes(32)
    prod = 0 if policy & KEYPOLICY_NOISVPRODID else identity.isv_prod_id
    # MISCSELECT is zero here, so MISCSELECT & misc_mask is too
    material += struct.pack("<HQQI", prod, flags, xfrm, 0 & misc_mask) + key_id
    return derive_key(platform_key, _EGETKEY_LABEL + b"SEAL", material)[:16]


def report_key_id(boot_nonce: bytes) -> bytes:
    """The report key id of one boot of the platform (on SGX, a value the CPU picks at power
    on): derived from a per-LibOS nonce, 32 bytes."""
    return hashlib.sha256(b"occlum-python/sim report keyid\0" + boot_nonce).digest()
