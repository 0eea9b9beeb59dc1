"""AES-CMAC, the MAC of an SGX report: on its own so that making and checking reports (which
every start may load) does not import the X.509 machinery of :mod:`.attest`."""

from __future__ import annotations

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

__all__ = ["aes_cmac"]


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (16 bytes) of ``data``: the MAC of an SGX report, under a 16-byte report key."""
    c = cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()
