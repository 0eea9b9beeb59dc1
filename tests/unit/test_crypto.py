"""The crypto recipes: key derivation, sealing and authentication, and their failure modes."""

from __future__ import annotations

import os

import pytest

from occlum.crypto.aead import (
    MAC_TAG_SIZE,
    SEAL_OVERHEAD,
    SEAL_TAG_SIZE,
    IntegrityError,
    authenticate,
    open_authenticated,
    open_sealed,
    seal,
    tag_of,
)
from occlum.crypto.kdf import derive_key

KEY = bytes(range(32))


def test_derive_key_is_deterministic_and_separates_labels_and_contexts() -> None:
    k = derive_key(KEY, b"label", b"ctx")
    assert len(k) == 32
    assert k == derive_key(KEY, b"label", b"ctx")
    others = {
        derive_key(KEY, b"label", b"ctx2"),
        derive_key(KEY, b"label2", b"ctx"),
        # moving a byte across the label/context boundary is a different key
        derive_key(KEY, b"labelc", b"tx"),
        derive_key(bytes(32), b"label", b"ctx"),
    }
    assert k not in others and len(others) == 4


def test_derive_key_rejects_short_master() -> None:
    with pytest.raises(ValueError):
        derive_key(b"short", b"l", b"c")


def test_seal_round_trip_and_fresh_nonce() -> None:
    a = seal(KEY, b"hello", b"aad")
    b = seal(KEY, b"hello", b"aad")
    assert a != b  # fresh nonce every time
    assert len(a) == 5 + SEAL_OVERHEAD
    assert b"hello" not in a
    assert open_sealed(KEY, a, b"aad") == b"hello"
    assert open_sealed(KEY, memoryview(bytearray(b)), b"aad") == b"hello"
    assert tag_of(a) == a[-SEAL_TAG_SIZE:]


@pytest.mark.parametrize("what", ["flip", "truncate", "aad", "key", "empty"])
def test_open_sealed_fails_with_integrity_error(what: str) -> None:
    blob = bytearray(seal(KEY, b"some secret data", b"aad"))
    key, aad = KEY, b"aad"
    if what == "flip":
        blob[len(blob) // 2] ^= 1
    elif what == "truncate":
        del blob[-1]
    elif what == "aad":
        aad = b"aae"
    elif what == "key":
        key = bytes(32)
    else:
        blob = bytearray(b"short")
    with pytest.raises(IntegrityError):
        open_sealed(key, bytes(blob), aad)


def test_integrity_error_is_a_value_error() -> None:
    assert issubclass(IntegrityError, ValueError)


def test_authenticate_round_trip_and_failures() -> None:
    blob = authenticate(KEY, b"visible", b"aad")
    assert blob.startswith(b"visible") and len(blob) == 7 + MAC_TAG_SIZE
    assert open_authenticated(KEY, blob, b"aad") == b"visible"
    assert tag_of(blob, mac_only=True) == blob[-MAC_TAG_SIZE:]
    bad = bytearray(blob)
    bad[0] ^= 0x80
    for key, b, aad in [
        (KEY, bytes(bad), b"aad"),
        (KEY, blob, b"aaX"),
        (bytes(32), blob, b"aad"),
        (KEY, blob[:-1], b"aad"),
        (KEY, blob[:5], b"aad"),
    ]:
        with pytest.raises(IntegrityError):
            open_authenticated(key, b, aad)


def test_authenticate_binds_the_aad_boundary() -> None:
    blob = authenticate(KEY, b"bc", b"a")
    # same concatenation, different split
    with pytest.raises(IntegrityError):
        open_authenticated(KEY, b"c" + blob[2:], b"ab")


def test_keys_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        seal(os.urandom(16), b"x", b"")
    with pytest.raises(ValueError):
        authenticate(os.urandom(16), b"x", b"")
