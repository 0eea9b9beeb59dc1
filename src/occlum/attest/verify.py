"""RA-TLS on the verifying side: accept a peer only if its certificate's quote verifies, meets
the policy, and binds the certificate's key.

The TLS handshake proves that the peer holds the private key of the certificate it sent; the
checks here prove that key was made inside an enclave the policy accepts. So a client does the
handshake without certificate validation (``client_context``: there is no CA to validate
against) and calls ``verify_certificate`` on ``getpeercert(binary_form=True)`` before it sends
anything; ``connect`` does both.
"""

from __future__ import annotations

import dataclasses
import hmac
import socket
import ssl

from occlum.crypto.ratls import RATLS_QUOTE_OID, RatlsCertError, read_certificate
from occlum.enclave.quote import QuoteError, QuotePolicy, verify_quote
from occlum.enclave.report import ReportBody
from occlum.errors import UserError

__all__ = ["RATLS_QUOTE_OID", "RatlsVerifyError", "client_context", "connect",
           "verify_certificate"]  # fmt: skip


class RatlsVerifyError(UserError):
    """The peer's certificate was refused; the one-line message names the check that failed."""


def verify_certificate(der: bytes | None, policy: QuotePolicy) -> ReportBody:
    """Check a peer certificate (DER): an RA-TLS certificate whose self-signature verifies,
    whose quote verifies under ``policy`` (its ``report_data`` is ignored: the report data
    must be the certificate key's hash), and whose quote's report data binds its key.
    Returns the quoted enclave's report body."""
    if not der:
        raise RatlsVerifyError("RA-TLS certificate refused: the peer sent no certificate")
    try:
        cert = read_certificate(der)
    except RatlsCertError as e:
        raise RatlsVerifyError(f"RA-TLS certificate refused: {e}")
    try:
        body = verify_quote(cert.quote, dataclasses.replace(policy, report_data=None))
    except QuoteError as e:
        raise RatlsVerifyError(f"RA-TLS quote refused: {e}")
    if not hmac.compare_digest(body.report_data, cert.expected_report_data):
        raise RatlsVerifyError(
            "RA-TLS certificate refused: the quote's report data does not bind the "
            "certificate's public key (it was quoted for another key)"
        )
    return body


def client_context() -> ssl.SSLContext:
    """A TLS client context for RA-TLS peers: no CA validation, no host name (the quote is
    what is checked, by ``verify_certificate``, after the handshake)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(
    host: str, port: int, policy: QuotePolicy, timeout: float = 30.0
) -> tuple[ssl.SSLSocket, ReportBody]:
    """A TLS connection to an RA-TLS server, returned only once its certificate verified
    (else closed, and ``RatlsVerifyError``)."""
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        tls = client_context().wrap_socket(raw)
    except BaseException:
        raw.close()
        raise
    try:
        body = verify_certificate(tls.getpeercert(binary_form=True), policy)
    except BaseException:
        tls.close()
        raise
    return tls, body
