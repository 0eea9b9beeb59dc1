"""The enclave signature structure (SIGSTRUCT) and the signer identity (MRSIGNER).

On SGX the enclave author signs a SIGSTRUCT carrying MRENCLAVE and the enclave's attributes
and product numbers; ``EINIT`` refuses an enclave whose measured MRENCLAVE differs from the
signed one or whose signature does not verify, and sets MRSIGNER to the SHA-256 of the signer's
RSA modulus (little-endian, as SIGSTRUCT stores it). We keep the same fields and rules:

* signed bytes: ``"OCCLUM-SIGSTRUCT" | version u32 | attributes u64 | MRENCLAVE (32) |
  isv_prod_id u16 | isv_svn u16`` (little-endian integers). ``attributes`` uses SGX's bits:
  ``MODE64BIT`` (bit 2) always, ``DEBUG`` (bit 1) when ``metadata.debuggable`` is true.
* signature: RSASSA-PKCS1-v1_5 over SHA-256, RSA-3072 with exponent 3 (``crypto.sign``).
* MRSIGNER = SHA-256(modulus as 384 little-endian bytes).

Unlike SGX there is no ``date`` field (so a rebuild with the same key is byte-identical) and no
vendor/KSS fields. The document is stored as JSON (``to_json``/``from_json``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from occlum.crypto.sign import (
    MODULUS_BYTES,
    PUBLIC_EXPONENT,
    SIGNATURE_SCHEME,
    load_signing_key,
    verify_signature,
)
from occlum.errors import UserError

FORMAT = "occlum-sigstruct/1"
SIGNED_TAG = b"OCCLUM-SIGSTRUCT"
SIGNED_VERSION = 1
ATTR_DEBUG = 1 << 1
ATTR_MODE64BIT = 1 << 2


@dataclass(slots=True, frozen=True)
class Measured:
    """What went into MRENCLAVE, kept beside the signature (unsigned) so that a mismatch can be
    explained: which of the LibOS, the config or an image changed."""

    libos_digest: str = ""
    config_sha256: str = ""
    image_root_hashes: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Sigstruct:
    mrenclave: bytes
    isv_prod_id: int
    isv_svn: int
    debuggable: bool
    modulus: bytes  # little-endian, MODULUS_BYTES long, as SGX stores it
    signature: bytes  # little-endian, MODULUS_BYTES long
    measured: Measured = field(default_factory=Measured)

    @property
    def attributes(self) -> int:
        return ATTR_MODE64BIT | (ATTR_DEBUG if self.debuggable else 0)

    @property
    def mrsigner(self) -> bytes:
        return mrsigner_of(self.modulus)

    def signed_bytes(self) -> bytes:
        return signed_bytes(self.mrenclave, self.attributes, self.isv_prod_id, self.isv_svn)

    def to_json(self) -> str:
        doc = {
            "format": FORMAT,
            "mrenclave": self.mrenclave.hex(),
            "mrsigner": self.mrsigner.hex(),
            "isv_prod_id": self.isv_prod_id,
            "isv_svn": self.isv_svn,
            "debuggable": self.debuggable,
            "signature_scheme": SIGNATURE_SCHEME,
            "exponent": PUBLIC_EXPONENT,
            "modulus": self.modulus.hex(),
            "signature": self.signature.hex(),
            "measured": {
                "libos_digest": self.measured.libos_digest,
                "config_sha256": self.measured.config_sha256,
                "image_root_hashes": dict(sorted(self.measured.image_root_hashes.items())),
            },
        }
        return json.dumps(doc, indent=4) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "the SIGSTRUCT") -> Sigstruct:
        """Parse a document written by ``to_json``; a malformed one is a one-line ``UserError``."""
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: brackets nested too deep
            raise UserError(f"{source} is not valid JSON: run `occlum build`")
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UserError(f"{source} is not an {FORMAT} document: run `occlum build`")
        try:
            measured = doc.get("measured", {})
            sig = cls(
                mrenclave=_hex(doc, "mrenclave", 32),
                isv_prod_id=_u16(doc, "isv_prod_id"),
                isv_svn=_u16(doc, "isv_svn"),
                debuggable=_bool(doc, "debuggable"),
                modulus=_hex(doc, "modulus", MODULUS_BYTES),
                signature=_hex(doc, "signature", MODULUS_BYTES),
                measured=Measured(
                    libos_digest=str(measured.get("libos_digest", "")),
                    config_sha256=str(measured.get("config_sha256", "")),
                    image_root_hashes={
                        str(k): str(v)
                        for k, v in dict(measured.get("image_root_hashes", {})).items()
                    },
                ),
            )
        except _Malformed as e:
            raise UserError(f"{source} is damaged: {e}: run `occlum build`")
        except (AttributeError, TypeError, ValueError):
            raise UserError(f"{source} is damaged: its 'measured' section is malformed")
        if doc.get("exponent", PUBLIC_EXPONENT) != PUBLIC_EXPONENT:
            raise UserError(f"{source} is damaged: the exponent must be {PUBLIC_EXPONENT}")
        if "mrsigner" in doc and doc["mrsigner"] != sig.mrsigner.hex():
            raise UserError(f"{source} is damaged: its mrsigner does not match its modulus")
        return sig


class _Malformed(Exception):
    pass


def _hex(doc: dict[str, Any], key: str, size: int) -> bytes:
    value = doc.get(key)
    if not isinstance(value, str):
        raise _Malformed(f"'{key}' is missing")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise _Malformed(f"'{key}' is not hex")
    if len(raw) != size:
        raise _Malformed(f"'{key}' is {len(raw)} bytes, not {size}")
    return raw


def _u16(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key)
    if type(value) is not int or not 0 <= value <= 0xFFFF:
        raise _Malformed(f"'{key}' is not a 16-bit number")
    return value


def _bool(doc: dict[str, Any], key: str) -> bool:
    value = doc.get(key)
    if not isinstance(value, bool):
        raise _Malformed(f"'{key}' is not true or false")
    return value


def signed_bytes(mrenclave: bytes, attributes: int, isv_prod_id: int, isv_svn: int) -> bytes:
    """The canonical bytes the signature covers (see the module docstring)."""
    return (
        SIGNED_TAG
        + struct.pack("<IQ", SIGNED_VERSION, attributes)
        + mrenclave
        + struct.pack("<HH", isv_prod_id, isv_svn)
    )


def mrsigner_of(modulus_le: bytes) -> bytes:
    """MRSIGNER: SHA-256 of the signer's modulus in SIGSTRUCT's little-endian layout."""
    return hashlib.sha256(modulus_le).digest()


def _metadata_numbers(metadata: Mapping[str, object]) -> tuple[int, int, bool]:
    # the names of Occlum.json's "metadata" section; Occlum maps product_id to ISVPRODID and
    # version_number to ISVSVN when it writes Enclave.xml for sgx_sign
    prod = metadata.get("product_id", 0)
    svn = metadata.get("version_number", 0)
    debuggable = metadata.get("debuggable", True)
    if type(prod) is not int or not 0 <= prod <= 0xFFFF:
        raise UserError(f"metadata.product_id {prod!r} is not a 16-bit number")
    if type(svn) is not int or not 0 <= svn <= 0xFFFF:
        raise UserError(f"metadata.version_number {svn!r} is not a 16-bit number")
    if not isinstance(debuggable, bool):
        raise UserError(f"metadata.debuggable {debuggable!r} is not true or false")
    return prod, svn, debuggable


def sign_enclave(
    mrenclave: bytes,
    metadata: Mapping[str, object],
    key_pem: bytes,
    *,
    measured: Measured | None = None,
    key_source: str = "the signing key",
) -> Sigstruct:
    """Sign ``mrenclave`` with the numbers of Occlum.json's ``metadata`` section
    (``product_id``, ``version_number``, ``debuggable``) using the PEM key ``key_pem``."""
    if len(mrenclave) != 32:
        raise ValueError(f"MRENCLAVE must be 32 bytes, not {len(mrenclave)}")
    key = load_signing_key(key_pem, key_source)
    prod, svn, debuggable = _metadata_numbers(metadata)
    attributes = ATTR_MODE64BIT | (ATTR_DEBUG if debuggable else 0)
    sig_be = key.sign(signed_bytes(mrenclave, attributes, prod, svn))
    return Sigstruct(
        mrenclave=mrenclave,
        isv_prod_id=prod,
        isv_svn=svn,
        debuggable=debuggable,
        modulus=key.modulus.to_bytes(MODULUS_BYTES, "little"),
        signature=sig_be[::-1],
        measured=measured if measured is not None else Measured(),
    )


def verify_sigstruct(sig: Sigstruct) -> None:
    """Check the signature over the signed fields; raise a one-line ``UserError`` if it fails."""
    modulus = int.from_bytes(sig.modulus, "little")
    if not verify_signature(modulus, sig.signed_bytes(), sig.signature[::-1]):
        raise UserError(
            "the enclave's SIGSTRUCT signature does not verify (build/sigstruct.json was "
            "altered or damaged): run `occlum build`"
        )
