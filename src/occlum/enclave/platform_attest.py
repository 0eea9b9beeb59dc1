"""The simulated platform's attestation identity: a root CA, a PCK-like key certified by it,
and the quoting enclave's attestation key.

On SGX hardware a quote is signed by the Quoting Enclave's attestation key; the QE's report,
signed with the platform's PCK key, binds that key; the PCK certificate chains to Intel's root
CA. Here all three keys are derived from the platform key (``keys.py``), so a platform has one
attestation identity for as long as its key lives, and another platform key gives another
root. The certificates (public) are made once and kept beside the platform key, in
``<platform key>.pck-chain.pem`` (the PCK-like certificate, then the root), so the root a
verifier is given (``occlum print platform-root``) stays the same byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from occlum.crypto.attest import (
    AttestCryptoError,
    EcKey,
    certificate_key,
    make_chain,
    verify_chain,
)
from occlum.crypto.kdf import derive_key
from occlum.enclave.keys import load_platform_key, platform_key_path
from occlum.errors import UserError

_LABEL = b"occlum-python/sim attestation v1 "
CHAIN_SUFFIX = ".pck-chain.pem"


@dataclass(slots=True, frozen=True)
class AttestationPlatform:
    """The keys and certificates one platform key gives."""

    root_key: EcKey
    pck_key: EcKey
    attestation_key: EcKey
    chain_pem: bytes  # PCK-like certificate, then the root
    root_pem: bytes

    @property
    def platform_id(self) -> bytes:
        """16 bytes naming the platform (the QE id of a quote's header)."""
        return hashlib.sha256(self.root_key.public_raw).digest()[:16]


def _keys(platform_key: bytes) -> tuple[EcKey, EcKey, EcKey]:
    return (
        EcKey(derive_key(platform_key, _LABEL + b"root CA", b"")),
        EcKey(derive_key(platform_key, _LABEL + b"PCK", b"")),
        EcKey(derive_key(platform_key, _LABEL + b"QE attestation key", b"")),
    )


def chain_path(key_path: Path | None = None) -> Path:
    key_path = platform_key_path() if key_path is None else key_path
    return key_path.with_name(key_path.name + CHAIN_SUFFIX)


def _split_chain(text: bytes) -> tuple[bytes, bytes]:
    end = b"-----END CERTIFICATE-----\n"
    cut = text.find(end)
    if cut < 0:
        raise AttestCryptoError("no certificate")
    return text[: cut + len(end)], text[cut + len(end) :]


def _write_once(path: Path, data: bytes) -> None:
    """First use: written whole under a temporary name, then linked into place, so that a
    concurrent first use's file wins (it holds the same keys) and none is seen half-written."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)  # certificates are public
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write the platform's certificates {path}: {e.strerror}")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def load_attestation_platform(
    key_path: Path | None = None, *, create: bool = True
) -> AttestationPlatform:
    """The attestation identity of the platform key at ``key_path`` (default: the platform
    key in use), making its certificates on first use. A certificate file that does not
    belong to that key is refused with one line."""
    key_path = platform_key_path() if key_path is None else key_path
    platform_key = load_platform_key(key_path, create=create)
    root_key, pck_key, att_key = _keys(platform_key)
    path = chain_path(key_path)
    if not path.exists():
        platform_id = hashlib.sha256(root_key.public_raw).hexdigest()[:16]
        leaf, root = make_chain(root_key, pck_key, platform_id)
        _write_once(path, leaf + root)
    try:
        text = path.read_bytes()
        leaf, root = _split_chain(text)
        if verify_chain(text, root) != pck_key.public_raw:
            raise AttestCryptoError("its PCK certificate is for another key")
        if certificate_key(root) != root_key.public_raw:
            raise AttestCryptoError("its root is another platform's")
    except OSError as e:
        raise UserError(f"cannot read the platform's certificates {path}: {e.strerror}")
    except AttestCryptoError as e:
        raise UserError(
            f"the platform's certificates {path} do not belong to the platform key {key_path} "
            f"({e}): remove the file to make new ones"
        )
    return AttestationPlatform(root_key, pck_key, att_key, text, root)
