"""RA-TLS certificates: a self-signed X.509 certificate whose extension holds an SGX quote.

The certificate's key is a fresh ECDSA P-256 key; the quote's report data is
``SHA-256(SubjectPublicKeyInfo DER) || 32 zero bytes``, so a verifier that checks the quote and
that hash knows the key was made inside the quoted enclave. The quote is the raw value of the
non-critical extension ``1.2.840.113741.1337.6``, the OID Gramine's RA-TLS gives a raw DCAP
quote (Intel's arc ``1.2.840.113741`` with Gramine's ``1337.6``).

This module also runs inside an instance, in the image's own Python with Debian's older
``cryptography`` (38): it imports nothing of the package but the standard library and
``cryptography``, and uses only APIs both versions have.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

RATLS_QUOTE_OID = "1.2.840.113741.1337.6"
REPORT_DATA_SIZE = 64
# A server's certificate is made at its start; a day of slack either side of now covers
# clocks that disagree a little, and a year keeps a long-running server valid.
_SLACK = datetime.timedelta(days=1)
_LIFETIME = datetime.timedelta(days=365)


class RatlsCertError(Exception):
    """A certificate that is not an RA-TLS certificate; the message says what is wrong."""


@dataclass(slots=True, frozen=True)
class RatlsCertificate:
    """What a verifier reads from an RA-TLS certificate (whose self-signature verified)."""

    spki_der: bytes  # the certificate's SubjectPublicKeyInfo, DER
    quote: bytes  # the extension's value

    @property
    def expected_report_data(self) -> bytes:
        return key_report_data(self.spki_der)


@dataclass(slots=True, frozen=True)
class CertAndKey:
    cert_pem: bytes
    key_pem: bytes  # PKCS#8, unencrypted: it lives in the enclave's memory only

    @property
    def cert_der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.cert_pem).public_bytes(
            serialization.Encoding.DER
        )


def key_report_data(spki_der: bytes) -> bytes:
    """The report data that binds a public key: SHA-256 of its SubjectPublicKeyInfo DER,
    then 32 zero bytes."""
    return hashlib.sha256(spki_der).digest() + bytes(REPORT_DATA_SIZE - 32)


def make_certificate(
    quote_for: Callable[[bytes], bytes], common_name: str = "Occlum RA-TLS"
) -> CertAndKey:
    """A new key and its self-signed certificate carrying ``quote_for(report data)``, where
    the report data binds the new key (``key_report_data``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    quote = quote_for(key_report_data(spki))
    return certificate_with_quote(key, quote, common_name)


def certificate_with_quote(
    key: ec.EllipticCurvePrivateKey, quote: bytes, common_name: str = "Occlum RA-TLS"
) -> CertAndKey:
    """The self-signed certificate of ``key`` with ``quote`` in its extension, whatever the
    quote's report data (``make_certificate`` is the way to a certificate that verifies)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SLACK)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(RATLS_QUOTE_OID), quote),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return CertAndKey(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def read_certificate(der: bytes) -> RatlsCertificate:
    """Parse a peer's certificate (DER): its self-signature must verify with its own key
    (ECDSA P-256), and it must carry exactly one RA-TLS quote extension."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise RatlsCertError(f"not a DER X.509 certificate ({e})")
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp256r1":
        raise RatlsCertError("the certificate's key is not an ECDSA P-256 key")
    algorithm = cert.signature_hash_algorithm
    if not isinstance(algorithm, hashes.SHA256):
        raise RatlsCertError("the certificate is not signed with ECDSA-SHA256")
    try:
        pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise RatlsCertError("the certificate's self-signature does not verify with its key")
    if cert.issuer != cert.subject:
        raise RatlsCertError("the certificate is not self-signed (issuer is not its subject)")
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(RATLS_QUOTE_OID))
    except x509.ExtensionNotFound:
        raise RatlsCertError(f"the certificate has no RA-TLS quote extension ({RATLS_QUOTE_OID})")
    except ValueError as e:  # a duplicate extension
        raise RatlsCertError(f"the certificate's extensions are malformed ({e})")
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise RatlsCertError("the RA-TLS extension is not a raw quote")
    spki = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return RatlsCertificate(spki_der=spki, quote=value.value)
