"""Quotes in Intel's SGX DCAP version 3 layout (``sgx_quote_3.h``), signed by the simulated
platform's quoting enclave, and their verifier.

A quote is ``sgx_quote_header_t`` (48 bytes) | ``sgx_report_body_t`` (384) |
``signature_data_len`` u32 | ``sgx_ql_ecdsa_sig_data_t``:

* header: version u16 = 3, att_key_type u16 = 2 (ECDSA-256 with P-256), reserved u32,
  qe_svn u16, pce_svn u16, qe_vendor_id[16] (Intel's QE vendor id), user_data[20] (the
  platform id, then zeros);
* signature data: sig[64] (ECDSA r||s of header | body by the attestation key),
  attest_pub_key[64] (x||y), qe_report (a report body of the quoting enclave),
  qe_report_sig[64] (by the PCK key, over qe_report), then ``sgx_ql_auth_data_t`` (size u16,
  data) and ``sgx_ql_certification_data_t`` (type u16 = 5: the PCK certificate chain in PEM,
  size u32, data). The QE report's report data is SHA-256(attest_pub_key | auth_data) and 32
  zero bytes: that is what ties the attestation key to the certified platform.

``verify_quote`` checks all of it, then the caller's ``QuotePolicy``; every failure is one
``QuoteError`` whose message names the check. It is what ``occlum verify-quote`` and
``SGXIOC_VER_DCAP_QUOTE`` run, and what a relying party (RA-TLS, a key broker) calls.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from occlum.crypto.attest import AttestCryptoError, canonical_pem, verify_chain, verify_raw
from occlum.enclave.platform_attest import AttestationPlatform
from occlum.enclave.report import (
    ATTR_INIT,
    ATTR_MODE64BIT,
    REPORT_BODY_SIZE,
    REPORT_DATA_SIZE,
    ReportBody,
)
from occlum.errors import UserError

QUOTE_VERSION = 3
ATT_KEY_TYPE_ECDSA_P256 = 2
CERT_TYPE_PCK_CHAIN = 5
HEADER_SIZE = 48
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
QE_SVN = PCE_SVN = 1
# the simulated quoting enclave's identity (a real QE's comes from Intel's signed QE identity)
QE_MRENCLAVE = hashlib.sha256(b"occlum-python/sim quoting enclave v1").digest()
QE_MRSIGNER = hashlib.sha256(b"occlum-python/sim quoting enclave signer").digest()
QE_ISV_PROD_ID = 1
QE_ISV_SVN = 1
# Intel's QE uses 0, 1, ..., 31 as its default authentication data
QE_AUTH_DATA = bytes(range(32))

# the fixed part of the signature data: sig, attest_pub_key, qe_report, qe_report_sig
_SIG_FIXED = 64 + 64 + REPORT_BODY_SIZE + 64


class QuoteError(UserError):
    """A quote that does not verify or does not meet the policy; the message names the check."""


class MalformedQuote(QuoteError):
    """Bytes that are not a version 3 ECDSA quote at all (as opposed to one that fails a check)."""


@dataclass(slots=True, frozen=True)
class QuotePolicy:
    """What a relying party requires of a quote. ``trusted_root`` is the PEM root certificate
    of the platform(s) it trusts (``occlum print platform-root``); every other field left
    None is not checked."""

    trusted_root: bytes
    mrenclave: bytes | None = None
    mrsigner: bytes | None = None
    isv_prod_id: int | None = None
    min_isv_svn: int | None = None
    allow_debug: bool = True
    report_data: bytes | None = None  # all 64 bytes, or a prefix of them


@dataclass(slots=True, frozen=True)
class ParsedQuote:
    header: bytes
    raw_body: bytes  # as received: the signature covers its reserved bytes too
    body: ReportBody
    signature: bytes
    attest_pub_key: bytes
    qe_report: bytes
    qe_report_sig: bytes
    auth_data: bytes
    cert_type: int
    cert_data: bytes

    @property
    def signed(self) -> bytes:
        return self.header + self.raw_body


def quote_size(platform: AttestationPlatform) -> int:
    """The size of every quote this platform makes (its certificate chain is fixed)."""
    return (
        HEADER_SIZE
        + REPORT_BODY_SIZE
        + 4
        + _SIG_FIXED
        + 2
        + len(QE_AUTH_DATA)
        + 6
        + len(platform.chain_pem)
    )


def _qe_report_body(attest_pub: bytes) -> bytes:
    binding = hashlib.sha256(attest_pub + QE_AUTH_DATA).digest() + bytes(32)
    return ReportBody(
        QE_MRENCLAVE, QE_MRSIGNER, QE_ISV_PROD_ID, QE_ISV_SVN, ATTR_INIT | ATTR_MODE64BIT,
        report_data=binding,
    ).pack()  # fmt: skip


def make_quote(platform: AttestationPlatform, body: ReportBody) -> bytes:
    """The quote of ``body`` (a report body the platform vouches for: the caller has checked
    that it came from an enclave of this platform)."""
    user_data = platform.platform_id + bytes(4)
    header = struct.pack(
        "<HHIHH16s20s", QUOTE_VERSION, ATT_KEY_TYPE_ECDSA_P256, 0, QE_SVN, PCE_SVN,
        INTEL_QE_VENDOR_ID, user_data,
    )  # fmt: skip
    packed = body.pack()
    att = platform.attestation_key
    qe_report = _qe_report_body(att.public_raw)
    sig_data = (
        att.sign_raw(header + packed)
        + att.public_raw
        + qe_report
        + platform.pck_key.sign_raw(qe_report)
        + struct.pack("<H", len(QE_AUTH_DATA))
        + QE_AUTH_DATA
        + struct.pack("<HI", CERT_TYPE_PCK_CHAIN, len(platform.chain_pem))
        + platform.chain_pem
    )
    return header + packed + struct.pack("<I", len(sig_data)) + sig_data


def parse_quote(quote: bytes) -> ParsedQuote:
    """Split a quote into its parts; a quote that is not the v3 ECDSA layout, or whose lengths
    do not add up exactly, is a ``QuoteError``."""
    fixed = HEADER_SIZE + REPORT_BODY_SIZE + 4
    if len(quote) < fixed:
        raise MalformedQuote(
            f"malformed quote: {len(quote)} bytes, shorter than a v3 quote's header"
        )
    version, key_type = struct.unpack_from("<HH", quote, 0)
    if version != QUOTE_VERSION:
        raise MalformedQuote(f"quote version {version}: only version 3 (DCAP) quotes are verified")
    if key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise MalformedQuote(f"attestation key type {key_type}: expected 2 (ECDSA P-256)")
    (sig_len,) = struct.unpack_from("<I", quote, fixed - 4)
    sig_data = quote[fixed:]
    if sig_len != len(sig_data):
        raise MalformedQuote(
            f"malformed quote: signature data length {sig_len}, but {len(sig_data)} bytes follow"
        )
    if len(sig_data) < _SIG_FIXED + 2:
        raise MalformedQuote("malformed quote: signature data too short")
    at = _SIG_FIXED
    (auth_len,) = struct.unpack_from("<H", sig_data, at)
    at += 2
    auth = sig_data[at : at + auth_len]
    at += auth_len
    if len(auth) != auth_len or len(sig_data) < at + 6:
        raise MalformedQuote("malformed quote: the QE authentication data overruns the quote")
    cert_type, cert_len = struct.unpack_from("<HI", sig_data, at)
    at += 6
    cert_data = sig_data[at:]
    if cert_len != len(cert_data):
        raise MalformedQuote(
            f"malformed quote: certification data length {cert_len}, "
            f"but {len(cert_data)} bytes follow"
        )
    return ParsedQuote(
        header=quote[:HEADER_SIZE],
        raw_body=quote[HEADER_SIZE : HEADER_SIZE + REPORT_BODY_SIZE],
        body=ReportBody.unpack(quote[HEADER_SIZE : HEADER_SIZE + REPORT_BODY_SIZE]),
        signature=sig_data[0:64],
        attest_pub_key=sig_data[64:128],
        qe_report=sig_data[128 : 128 + REPORT_BODY_SIZE],
        qe_report_sig=sig_data[128 + REPORT_BODY_SIZE : _SIG_FIXED],
        auth_data=auth,
        cert_type=cert_type,
        cert_data=cert_data,
    )


def verify_quote(quote: bytes, policy: QuotePolicy) -> ReportBody:
    """Check ``quote``: its certificate chain up to ``policy.trusted_root``, the QE report's
    signature by the certified PCK key, that report's binding of the attestation key, the QE's
    identity, the quote's signature by the attestation key, then the policy. Returns the
    enclave's report body; raises ``QuoteError`` naming the first check that failed."""
    q = parse_quote(quote)
    if q.cert_type != CERT_TYPE_PCK_CHAIN:
        raise QuoteError(
            f"certification data type {q.cert_type}: expected 5 (PCK certificate chain)"
        )
    try:
        pck_pub = verify_chain(q.cert_data, policy.trusted_root)
        canonical = canonical_pem(q.cert_data)
    except AttestCryptoError as e:
        raise QuoteError(f"PCK certificate chain refused: {e}")
    if canonical != q.cert_data:
        raise QuoteError("PCK certificate chain refused: bytes outside its certificates")
    if not verify_raw(pck_pub, q.qe_report, q.qe_report_sig):
        raise QuoteError("QE report signature does not verify with the PCK certificate's key")
    qe = ReportBody.unpack(q.qe_report)
    binding = hashlib.sha256(q.attest_pub_key + q.auth_data).digest() + bytes(32)
    if not hmac.compare_digest(qe.report_data, binding):
        raise QuoteError("QE report data does not bind the attestation key and auth data")
    if qe.mrsigner != QE_MRSIGNER or qe.isv_prod_id != QE_ISV_PROD_ID or qe.debug:
        raise QuoteError("QE identity: the quote was not made by the platform's quoting enclave")
    if not verify_raw(q.attest_pub_key, q.signed, q.signature):
        raise QuoteError("quote signature does not verify with the attestation key")
    check_policy(q.body, policy)
    return q.body


def check_policy(body: ReportBody, policy: QuotePolicy) -> None:
    """The policy's checks of a verified report body, each failure its own ``QuoteError``."""
    if policy.mrenclave is not None and body.mrenclave != policy.mrenclave:
        raise QuoteError(
            f"MRENCLAVE {body.mrenclave.hex()} is not the expected {policy.mrenclave.hex()}"
        )
    if policy.mrsigner is not None and body.mrsigner != policy.mrsigner:
        raise QuoteError(
            f"MRSIGNER {body.mrsigner.hex()} is not the expected {policy.mrsigner.hex()}"
        )
    if policy.isv_prod_id is not None and body.isv_prod_id != policy.isv_prod_id:
        raise QuoteError(f"ISVPRODID {body.isv_prod_id} is not the expected {policy.isv_prod_id}")
    if policy.min_isv_svn is not None and body.isv_svn < policy.min_isv_svn:
        raise QuoteError(f"ISVSVN {body.isv_svn} is below the minimum {policy.min_isv_svn}")
    if body.debug and not policy.allow_debug:
        raise QuoteError("the enclave is debuggable (DEBUG attribute) and the policy refuses it")
    if policy.report_data is not None:
        want = policy.report_data
        if len(want) > REPORT_DATA_SIZE or body.report_data[: len(want)] != want:
            raise QuoteError("report data does not match the expected value")
