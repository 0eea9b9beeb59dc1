"""RA-TLS certificates: built with a quote over their key, parsed and verified, and refused,
each with its own line, when any part does not hold."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from occlum.attest.ratls import RatlsError, dcap_quote
from occlum.attest.verify import RatlsVerifyError, verify_certificate
from occlum.crypto.ratls import (
    RATLS_QUOTE_OID,
    RatlsCertError,
    certificate_with_quote,
    key_report_data,
    make_certificate,
    new_key,
    read_certificate,
)
from occlum.enclave.platform_attest import AttestationPlatform, load_attestation_platform
from occlum.enclave.quote import QuotePolicy, make_quote
from occlum.enclave.report import EnclaveIdentity

IDENTITY = EnclaveIdentity(bytes(range(32)), bytes(range(32, 64)), 7, 3, debuggable=False)


@pytest.fixture(scope="module")
def platforms(tmp_path_factory: pytest.TempPathFactory) -> tuple[AttestationPlatform, ...]:
    tmp = tmp_path_factory.mktemp("ratls-platforms")
    return (load_attestation_platform(tmp / "a" / "platform.key"),
            load_attestation_platform(tmp / "b" / "platform.key"))  # fmt: skip


def _quoter(platform: AttestationPlatform, identity: EnclaveIdentity = IDENTITY):  # type: ignore[no-untyped-def]
    return lambda data: make_quote(platform, identity.body(data))


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def test_certificate_carries_a_quote_over_its_key(
    platforms: tuple[AttestationPlatform, ...],
) -> None:
    seen: list[bytes] = []

    def quoter(data: bytes) -> bytes:
        seen.append(data)
        return make_quote(platforms[0], IDENTITY.body(data))

    made = make_certificate(quoter, "test server")
    cert = x509.load_pem_x509_certificate(made.cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert seen == [key_report_data(spki)]
    assert len(seen[0]) == 64 and seen[0][32:] == bytes(32)
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(RATLS_QUOTE_OID))
    assert not ext.critical
    parsed = read_certificate(made.cert_der)
    assert parsed.spki_der == spki and parsed.quote == ext.value.value  # type: ignore[attr-defined]
    # the private key is the certificate's
    key = serialization.load_pem_private_key(made.key_pem, None)
    assert (
        key.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == spki
    )

    body = verify_certificate(made.cert_der, QuotePolicy(platforms[0].root_pem,
                                                         mrenclave=IDENTITY.mrenclave))  # fmt: skip
    assert body.mrenclave == IDENTITY.mrenclave and body.report_data == seen[0]


def test_quote_for_another_key_is_refused(platforms: tuple[AttestationPlatform, ...]) -> None:
    honest = make_certificate(_quoter(platforms[0]))
    stolen = read_certificate(honest.cert_der).quote
    forged = certificate_with_quote(new_key(), stolen)
    policy = QuotePolicy(platforms[0].root_pem, mrenclave=IDENTITY.mrenclave)
    with pytest.raises(RatlsVerifyError, match="does not bind the certificate's public key"):
        verify_certificate(forged.cert_der, policy)
    # a policy's own report_data cannot stand in for the key's binding
    with pytest.raises(RatlsVerifyError, match="does not bind"):
        verify_certificate(forged.cert_der, QuotePolicy(platforms[0].root_pem,
                                                        report_data=stolen[368:400]))  # fmt: skip


def test_each_failed_check_has_its_own_line(platforms: tuple[AttestationPlatform, ...]) -> None:
    a, b = platforms
    good = make_certificate(_quoter(a)).cert_der
    cases = [
        (QuotePolicy(b.root_pem), "RA-TLS quote refused: PCK certificate chain refused"),
        (QuotePolicy(a.root_pem, mrenclave=bytes(32)), "RA-TLS quote refused: MRENCLAVE"),
        (QuotePolicy(a.root_pem, mrsigner=bytes(32)), "RA-TLS quote refused: MRSIGNER"),
        (QuotePolicy(a.root_pem, min_isv_svn=4), "RA-TLS quote refused: ISVSVN 3 is below"),
    ]
    for policy, message in cases:
        with pytest.raises(RatlsVerifyError) as info:
            verify_certificate(good, policy)
        assert str(info.value).startswith(message), str(info.value)
        assert "\n" not in str(info.value)
    debug = EnclaveIdentity(IDENTITY.mrenclave, IDENTITY.mrsigner, 7, 3, debuggable=True)
    with pytest.raises(RatlsVerifyError, match="debuggable"):
        verify_certificate(make_certificate(_quoter(a, debug)).cert_der,
                           QuotePolicy(a.root_pem, allow_debug=False))  # fmt: skip


def test_tampered_quote_in_the_extension_is_refused(
    platforms: tuple[AttestationPlatform, ...],
) -> None:
    key = new_key()
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    quote = bytearray(make_quote(platforms[0], IDENTITY.body(key_report_data(spki))))
    quote[48 + 64] ^= 1  # a byte of MRENCLAVE
    cert = certificate_with_quote(key, bytes(quote))
    with pytest.raises(RatlsVerifyError, match="quote signature does not verify"):
        verify_certificate(cert.cert_der, QuotePolicy(platforms[0].root_pem))


def _plain_cert(key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "plain")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(signer, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.DER)


def test_certificates_that_are_not_ratls_are_refused(
    platforms: tuple[AttestationPlatform, ...],
) -> None:
    policy = QuotePolicy(platforms[0].root_pem)
    key = new_key()
    cases = [
        (None, "the peer sent no certificate"),
        (b"not a certificate", "not a DER X.509 certificate"),
        (_plain_cert(key, key), f"no RA-TLS quote extension ({RATLS_QUOTE_OID})"),
        (_plain_cert(key, new_key()), "self-signature does not verify"),
    ]
    for der, message in cases:
        with pytest.raises(RatlsVerifyError, match=message.replace("(", r"\(").replace(")", r"\)")):
            verify_certificate(der, policy)
    with pytest.raises(RatlsCertError, match="not an ECDSA P-256 key"):
        other = ec.generate_private_key(ec.SECP384R1())
        read_certificate(_plain_cert(other, other))


def test_a_garbage_quote_is_malformed(platforms: tuple[AttestationPlatform, ...]) -> None:
    cert = certificate_with_quote(new_key(), b"\x03\x00\x02\x00garbage")
    with pytest.raises(RatlsVerifyError, match="RA-TLS quote refused: malformed quote"):
        verify_certificate(cert.cert_der, QuotePolicy(platforms[0].root_pem))


def test_quote_outside_an_instance_is_one_clear_error(tmp_path: Path) -> None:
    """No /dev/sgx (not inside an instance), or a device that is not Occlum's."""
    with pytest.raises(RatlsError, match=r"^cannot open .*/none \(No such file or directory\)"):
        dcap_quote(b"data", str(tmp_path / "none"))
    with pytest.raises(RatlsError, match=r"^SGXIOC_GET_DCAP_QUOTE_SIZE failed \("):
        dcap_quote(b"data", "/dev/null")
    with pytest.raises(ValueError, match="at most 64"):
        dcap_quote(bytes(65), "/dev/null")
