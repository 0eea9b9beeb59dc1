"""Attestation recipes: ECDSA P-256 keys as SGX's quotes carry them, report MACs, and the
platform's certificate chain.

SGX's DCAP quotes carry raw keys and signatures, not DER: a public key is the 64 bytes of its
x and y coordinates (big-endian, 32 each), a signature the 64 bytes of r and s. The report MAC
is AES-128-CMAC. The chain that certifies the quoting key is X.509 in PEM, leaf first. The
enclave layer sees bytes only; every failure is one ``AttestCryptoError`` saying what failed.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import warnings
from collections.abc import Iterator

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID

__all__ = [
    "AttestCryptoError",
    "EcKey",
    "canonical_pem",
    "certificate_key",
    "make_chain",
    "verify_chain",
    "verify_raw",
]

_CURVE = ec.SECP256R1()
# what the X.509 parser raises on a damaged certificate, at load or when a field is first read
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    x509.InvalidVersion,
    UnsupportedAlgorithm,
    Warning,  # what the parser only warns of, made an error (see _strict)
)
_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class AttestCryptoError(Exception):
    """A signature, a key or a certificate that does not hold; the message says which."""


class EcKey:
    """An ECDSA P-256 private key derived from 32 seed bytes (the same seed, the same key)."""

    __slots__ = ("_key",)

    def __init__(self, seed: bytes) -> None:
        if len(seed) < 32:
            raise ValueError("an EC key seed is at least 32 bytes")
        # reduced into [1, n-1]: the seed is a KDF output, uniform enough that the bias of
        # one modular reduction of 512 bits is negligible
        wide = hashlib.sha512(b"occlum-python ec seed\0" + seed).digest()
        scalar = int.from_bytes(wide, "big") % (_ORDER - 1) + 1
        self._key = ec.derive_private_key(scalar, _CURVE)

    @property
    def public_raw(self) -> bytes:
        """x || y, 64 bytes, as ``sgx_ql_ecdsa_sig_data_t.attest_pub_key`` holds it."""
        numbers = self._key.public_key().public_numbers()
        return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")

    def sign_raw(self, message: bytes) -> bytes:
        """ECDSA-SHA256 of ``message`` as r || s, 64 bytes."""
        r, s = decode_dss_signature(self._key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _public_from_raw(raw: bytes) -> ec.EllipticCurvePublicKey:
    if len(raw) != 64:
        raise AttestCryptoError("a public key is 64 bytes")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, b"\x04" + raw)
    except ValueError:
        raise AttestCryptoError("the public key is not a point of P-256")


def verify_raw(public_raw: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (r || s) is ECDSA-SHA256 of ``message`` by ``public_raw``."""
    if len(signature) != 64:
        return False
    try:
        public = _public_from_raw(public_raw)
    except AttestCryptoError:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (0 < r < _ORDER and 0 < s < _ORDER):
        return False
    try:
        public.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# -- the platform's certificate chain ---------------------------------------------------------

_VALID_FROM = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
_VALID_UNTIL = datetime.datetime(2099, 12, 31, tzinfo=datetime.UTC)


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Occlum for Python (simulated SGX)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _cert(
    subject: str, subject_key: EcKey, issuer: str, issuer_key: EcKey, *, ca: bool, serial: int
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(subject_key._key.public_key())
        .serial_number(serial)
        .not_valid_before(_VALID_FROM)
        .not_valid_after(_VALID_UNTIL)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(issuer_key._key, hashes.SHA256())


def make_chain(root_key: EcKey, pck_key: EcKey, platform_id: str) -> tuple[bytes, bytes]:
    """A self-signed root CA and a PCK-like leaf certificate for ``pck_key`` signed by it, as
    PEM: (leaf, root). ``platform_id`` goes into the common names."""
    root_name = f"Simulated SGX Root CA {platform_id}"
    root = _cert(root_name, root_key, root_name, root_key, ca=True, serial=1)
    leaf = _cert(f"Simulated SGX PCK Certificate {platform_id}", pck_key, root_name, root_key,
                 ca=False, serial=2)  # fmt: skip
    pem = serialization.Encoding.PEM
    return leaf.public_bytes(pem), root.public_bytes(pem)


@contextlib.contextmanager
def _strict() -> Iterator[None]:
    """What the X.509 parser only warns of (a serial number that is not positive, a country
    name that is not two letters) is an error: no certificate we make has it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _load_pems(data: bytes) -> list[x509.Certificate]:
    try:
        with _strict():
            return x509.load_pem_x509_certificates(data)
    except _PARSE_ERRORS:
        raise AttestCryptoError("the certificate chain is not PEM certificates")


def verify_chain(chain_pem: bytes, trusted_root_pem: bytes) -> bytes:
    """Check ``chain_pem`` (leaf first, the root last) against ``trusted_root_pem``: the last
    certificate is the trusted root, each certificate is signed by the next, intermediates and
    the root are CAs, all are valid now. Returns the leaf's public key, raw (64 bytes)."""
    chain = _load_pems(chain_pem)
    roots = _load_pems(trusted_root_pem)
    if len(roots) != 1:
        raise AttestCryptoError("the trusted root is not exactly one certificate")
    if len(chain) < 2:
        raise AttestCryptoError("the certificate chain has fewer than two certificates")
    if chain[-1] != roots[0]:
        raise AttestCryptoError("the chain's root is not the trusted platform root")
    try:
        with _strict():
            return _check_links(chain)
    except _PARSE_ERRORS:
        # the parser reads a certificate's fields when they are first asked for
        raise AttestCryptoError("a certificate of the chain is malformed")


def _check_links(chain: list[x509.Certificate]) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    for i, cert in enumerate(chain):
        issuer = chain[min(i + 1, len(chain) - 1)]
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise AttestCryptoError(f"certificate {i} of the chain is not valid now")
        if i > 0:
            try:
                bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            except x509.ExtensionNotFound:
                bc = None
            if bc is None or not bc.ca:
                raise AttestCryptoError(f"certificate {i} of the chain is not a CA")
        if cert.issuer != issuer.subject:
            raise AttestCryptoError(f"certificate {i} of the chain is not issued by the next")
        try:
            cert.verify_directly_issued_by(issuer)
        except (TypeError, InvalidSignature):
            raise AttestCryptoError(f"certificate {i} of the chain has a bad signature")
    public = chain[0].public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != _CURVE.name:
        raise AttestCryptoError("the leaf certificate's key is not ECDSA P-256")
    numbers = public.public_numbers()
    return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


def certificate_key(cert_pem: bytes) -> bytes:
    """The raw (64-byte) P-256 public key of one PEM certificate."""
    certs = _load_pems(cert_pem)
    if len(certs) != 1:
        raise AttestCryptoError("expected exactly one certificate")
    try:
        public = certs[0].public_key()
    except _PARSE_ERRORS:
        raise AttestCryptoError("the certificate's key is malformed")
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != _CURVE.name:
        raise AttestCryptoError("the certificate's key is not ECDSA P-256")
    numbers = public.public_numbers()
    return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


def canonical_pem(chain_pem: bytes) -> bytes:
    """The certificates of ``chain_pem`` written back as PEM: a chain that differs from this
    carries bytes no certificate covers (so they could change unnoticed)."""
    pem = serialization.Encoding.PEM
    return b"".join(c.public_bytes(pem) for c in _load_pems(chain_pem))
