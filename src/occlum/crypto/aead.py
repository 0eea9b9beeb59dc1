"""Sealing blobs: authenticated encryption (AES-256-GCM) and authentication only (HMAC-SHA256).

Owns the byte format of a sealed blob and the one exception, :class:`IntegrityError`, raised
for any blob that does not open: wrong key, wrong associated data, flipped or missing bytes.

- ``seal``/``open_sealed``: ``nonce(12) || ciphertext || tag(16)``.  The nonce is fresh from
  the OS random source on every call, never chosen by a caller, so a key may seal many blobs
  (up to the usual 2**32 random-nonce bound; callers that derive one key per object stay far
  below it).
- ``authenticate``/``open_authenticated``: ``plaintext || HMAC-SHA256(key, aad, plaintext)``
  for integrity-only storage (Occlum's "MAC" mode); the data stays readable on the host.

The last :data:`SEAL_TAG_SIZE` / :data:`MAC_TAG_SIZE` bytes of a blob identify it: a caller
that records them can later tell this exact blob from any other (see :func:`tag_of`).
"""

from __future__ import annotations

import hmac as _hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _chmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "MAC_TAG_SIZE",
    "NONCE_SIZE",
    "SEAL_OVERHEAD",
    "SEAL_TAG_SIZE",
    "IntegrityError",
    "authenticate",
    "open_authenticated",
    "open_sealed",
    "seal",
    "tag_of",
]

NONCE_SIZE = 12
SEAL_TAG_SIZE = 16
SEAL_OVERHEAD = NONCE_SIZE + SEAL_TAG_SIZE
MAC_TAG_SIZE = 32

Buffer = bytes | bytearray | memoryview


class IntegrityError(ValueError):
    """A blob failed to open: it was not sealed by this key with this associated data."""


def _check_key(key: bytes) -> None:
    if len(key) != 32:
        raise ValueError("keys are 32 bytes (AES-256 / HMAC-SHA256)")


def seal(key: bytes, plaintext: Buffer, aad: bytes) -> bytearray:
    """Encrypt and authenticate ``plaintext`` bound to ``aad``; a fresh random nonce each call.

    The blob is a new buffer the caller owns (a bytearray: no copy to make it immutable).
    """
    _check_key(key)
    nonce = os.urandom(NONCE_SIZE)
    # encrypting into the final buffer saves a copy of the whole blob (it halves the cost)
    blob = bytearray(NONCE_SIZE + len(plaintext) + SEAL_TAG_SIZE)
    blob[:NONCE_SIZE] = nonce
    AESGCM(key).encrypt_into(nonce, plaintext, aad, memoryview(blob)[NONCE_SIZE:])
    return blob


def open_sealed(key: bytes, blob: Buffer, aad: bytes) -> bytes:
    """The plaintext of a :func:`seal` blob, or :class:`IntegrityError`."""
    _check_key(key)
    if len(blob) < SEAL_OVERHEAD:
        raise IntegrityError("sealed blob is truncated")
    view = memoryview(blob)
    try:
        return AESGCM(key).decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], aad)
    except InvalidTag:
        raise IntegrityError("sealed blob does not authenticate") from None


def _mac(key: bytes, data: Buffer, aad: bytes) -> bytes:
    h = _chmac.HMAC(key, hashes.SHA256())
    # length-prefixing the aad keeps (aad, data) pairs from being re-split
    h.update(struct.pack("<Q", len(aad)))
    h.update(aad)
    h.update(data)
    return h.finalize()


def authenticate(key: bytes, plaintext: Buffer, aad: bytes) -> bytes:
    """``plaintext`` followed by its MAC bound to ``aad``: integrity without secrecy."""
    _check_key(key)
    return bytes(plaintext) + _mac(key, plaintext, aad)


def open_authenticated(key: bytes, blob: Buffer, aad: bytes) -> bytes:
    """The plaintext of an :func:`authenticate` blob, or :class:`IntegrityError`."""
    _check_key(key)
    if len(blob) < MAC_TAG_SIZE:
        raise IntegrityError("authenticated blob is truncated")
    view = memoryview(blob)
    data, tag = view[:-MAC_TAG_SIZE], view[-MAC_TAG_SIZE:]
    if not _hmac.compare_digest(_mac(key, data, aad), tag):
        raise IntegrityError("authenticated blob does not verify")
    return bytes(data)


def tag_of(blob: Buffer, *, mac_only: bool = False) -> bytes:
    """The authentication tag that ends a sealed (or, with ``mac_only``, authenticated) blob."""
    size = MAC_TAG_SIZE if mac_only else SEAL_TAG_SIZE
    if len(blob) < size:
        raise IntegrityError("blob is truncated")
    return bytes(memoryview(blob)[-size:])
