"""Enclave signing keys: the RSA recipe that SGX's SIGSTRUCT uses, behind a small interface.

SGX signs an enclave with RSA-3072, public exponent 3, RSASSA-PKCS1-v1_5 over SHA-256 (the
``sgx_sign`` tool refuses any other key). We keep exactly that recipe: ``cryptography``
generates and accepts exponent 3, and PKCS#1 v1.5 signatures are deterministic, so signing the
same measurement with the same key gives the same bytes and builds stay reproducible.

The enclave layer never sees a ``cryptography`` object: it gets a ``SigningKey`` that can sign
bytes and tell its modulus, and verifies with ``verify_signature`` from the modulus alone (as a
SIGSTRUCT carries only the modulus; the exponent is fixed at 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from occlum.errors import UserError

KEY_BITS = 3072
PUBLIC_EXPONENT = 3
MODULUS_BYTES = KEY_BITS // 8
SIGNATURE_SCHEME = "RSASSA-PKCS1-v1_5-SHA256"

_MAKE_KEY_HINT = "make one with `openssl genrsa -3 -out key.pem 3072`"


@dataclass(slots=True, frozen=True)
class SigningKey:
    """A loaded RSA-3072/e=3 private key."""

    _key: rsa.RSAPrivateKey

    @property
    def modulus(self) -> int:
        return self._key.public_key().public_numbers().n

    def sign(self, message: bytes) -> bytes:
        """The PKCS#1 v1.5 SHA-256 signature of ``message``, big-endian, ``MODULUS_BYTES`` long."""
        return self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def generate_signing_key() -> bytes:
    """A fresh SGX-shaped signing key as unencrypted PEM ("BEGIN RSA PRIVATE KEY", like
    Occlum's template ``Enclave.pem``)."""
    key = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def load_signing_key(pem: bytes, source: str = "the signing key") -> SigningKey:
    """Parse a PEM private key; every way it can be unusable is one ``UserError`` line naming
    ``source`` (a path, usually)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        # cryptography raises TypeError for "password was not given but key is encrypted"
        raise UserError(f"{source} is encrypted: give an unencrypted PEM key ({_MAKE_KEY_HINT})")
    except (ValueError, UnsupportedAlgorithm):
        raise UserError(f"{source} is not a PEM private key ({_MAKE_KEY_HINT})")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UserError(f"{source} is not an RSA key: SGX signs with RSA-3072 ({_MAKE_KEY_HINT})")
    numbers = key.public_key().public_numbers()
    if key.key_size != KEY_BITS or numbers.e != PUBLIC_EXPONENT:
        raise UserError(
            f"{source} is RSA-{key.key_size} with exponent {numbers.e}: SGX needs RSA-3072 "
            f"with exponent 3 ({_MAKE_KEY_HINT})"
        )
    return SigningKey(key)


def verify_signature(modulus: int, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (big-endian) is a valid signature of ``message`` under the public
    key (``modulus``, 3)."""
    if modulus.bit_length() != KEY_BITS or len(signature) != MODULUS_BYTES:
        return False
    try:
        public = rsa.RSAPublicNumbers(PUBLIC_EXPONENT, modulus).public_key()
        public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True
