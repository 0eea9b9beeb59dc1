"""Key derivation: every key the LibOS uses is derived here from a master key with HKDF.

Owns :func:`derive_key`.  Callers name what a key is for (``label``) and which object it
belongs to (``context``); distinct (label, context) pairs give independent keys, so one
master key can protect many objects without any two of them sharing a key.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["KEY_SIZE", "derive_key"]

KEY_SIZE = 32


def derive_key(master: bytes, label: bytes, context: bytes) -> bytes:
    """A 32-byte key for ``label`` (what it is for) and ``context`` (which object), by HKDF-SHA256.

    The label is length-prefixed in HKDF's ``info`` so that no (label, context) pair can be
    spelled as another one by moving bytes across the boundary.
    """
    if len(master) < 16:
        raise ValueError("master key must be at least 16 bytes")
    if len(label) > 0xFFFF:
        raise ValueError("label too long")
    info = struct.pack("<H", len(label)) + label + context
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(master)
