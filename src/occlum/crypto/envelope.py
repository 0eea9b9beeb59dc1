"""Secrets sent to one ephemeral key: X25519 key agreement, HKDF-SHA256, AES-256-GCM.

The key broker encrypts a secret to the public key the requester put in its quote; only the
holder of the matching private key (the enclave that made the quote) can open it. The sender
makes an ephemeral X25519 key of its own for every envelope, so two envelopes never share a
key even for the same recipient:

* ``shared = X25519(sender_ephemeral_private, recipient_public)``
* ``key = HKDF-SHA256(ikm=shared, salt=salt, info=INFO || info)`` (32 bytes), where the
  broker passes the challenge nonce as salt and the secret's name as info;
* ``ciphertext = AES-256-GCM(key, iv, plaintext, aad=info)`` with a random 12-byte iv, the
  16-byte tag appended.

Every failure to open is one ``EnvelopeError``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["INFO", "PUBLIC_KEY_SIZE", "Envelope", "EnvelopeError", "EphemeralKey", "seal_to"]

INFO = b"occlum-kbs v1 secret "
PUBLIC_KEY_SIZE = 32
IV_SIZE = 12


class EnvelopeError(ValueError):
    """A public key that is not one, or an envelope that does not open."""


@dataclass(slots=True, frozen=True)
class Envelope:
    sender_public: bytes  # the sender's ephemeral X25519 public key (32 bytes)
    iv: bytes
    ciphertext: bytes  # with the GCM tag


def _key(shared: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=INFO + info).derive(shared)


def _public(raw: bytes) -> X25519PublicKey:
    if len(raw) != PUBLIC_KEY_SIZE:
        raise EnvelopeError(f"an X25519 public key is 32 bytes, not {len(raw)}")
    try:
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise EnvelopeError(f"not an X25519 public key: {e}")


def seal_to(recipient_public: bytes, plaintext: bytes, salt: bytes, info: bytes) -> Envelope:
    """``plaintext`` encrypted so that only the holder of ``recipient_public``'s private key
    opens it."""
    peer = _public(recipient_public)
    mine = X25519PrivateKey.generate()
    try:
        shared = mine.exchange(peer)
    except ValueError as e:  # a low-order point gives the all-zero secret: refused
        raise EnvelopeError(f"unusable X25519 public key: {e}")
    iv = os.urandom(IV_SIZE)
    ct = AESGCM(_key(shared, salt, info)).encrypt(iv, plaintext, info)
    sender = mine.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return Envelope(sender, iv, ct)


class EphemeralKey:
    """The requester's side: a fresh X25519 key pair that opens one envelope."""

    __slots__ = ("_key",)

    def __init__(self) -> None:
        self._key = X25519PrivateKey.generate()

    @property
    def public_raw(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def open(self, envelope: Envelope, salt: bytes, info: bytes) -> bytes:
        try:
            shared = self._key.exchange(_public(envelope.sender_public))
            return AESGCM(_key(shared, salt, info)).decrypt(envelope.iv, envelope.ciphertext, info)
        except (InvalidTag, ValueError) as e:
            raise EnvelopeError(f"the secret does not open with this key ({e or 'bad tag'})")
