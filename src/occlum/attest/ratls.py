"""RA-TLS inside an instance: a TLS server certificate that carries a quote of this enclave.

A Python program in an instance calls ``make_ratls_certificate()`` (or ``server_context()``
for an ``ssl.SSLContext`` ready to serve): a fresh P-256 key, and a self-signed certificate
whose extension holds a DCAP quote whose report data is SHA-256 of the key
(``crypto/ratls.py``). The quote comes from Occlum's ``/dev/sgx`` through the same ioctls and
argument structures a C program uses (``docs/attestation.md``).

This module runs in the instance's own Python: it imports only the standard library,
``cryptography`` and ``occlum.crypto.ratls`` (the image needs those files, not the whole
package; see ``examples/ratls``).
"""

from __future__ import annotations

import array
import fcntl
import os
import ssl
import struct
import tempfile

from occlum.crypto.ratls import REPORT_DATA_SIZE, CertAndKey, make_certificate

SGX_DEVICE = "/dev/sgx"
# Occlum's requests (_IOR('s', 7, uint32_t), _IOWR('s', 8, sgxioc_gen_dcap_quote_arg_t))
SGXIOC_GET_DCAP_QUOTE_SIZE = 0x80047307
SGXIOC_GEN_DCAP_QUOTE = 0xC0187308


class RatlsError(Exception):
    """Getting a quote failed; the message says which step."""


def dcap_quote(report_data: bytes, device: str = SGX_DEVICE) -> bytes:
    """A DCAP quote of this enclave with ``report_data`` (at most 64 bytes, padded with
    zeros), through ``SGXIOC_GET_DCAP_QUOTE_SIZE`` and ``SGXIOC_GEN_DCAP_QUOTE``."""
    if len(report_data) > REPORT_DATA_SIZE:
        raise ValueError(f"report data is {len(report_data)} bytes, at most 64")
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise RatlsError(f"cannot open {device} ({e.strerror}): not inside an instance?")
    try:
        size_buf = bytearray(4)
        try:
            fcntl.ioctl(fd, SGXIOC_GET_DCAP_QUOTE_SIZE, size_buf, True)
        except OSError as e:
            raise RatlsError(f"SGXIOC_GET_DCAP_QUOTE_SIZE failed ({e.strerror})")
        (size,) = struct.unpack("<I", size_buf)
        # The argument structure holds pointers: arrays give stable buffers and their
        # addresses (buffer_info) without ctypes.
        data = array.array("B", report_data.ljust(REPORT_DATA_SIZE, b"\0"))
        quote_len = array.array("I", [size])
        quote_buf = array.array("B", bytes(size))
        arg = bytearray(
            struct.pack(
                "<QQQ",
                data.buffer_info()[0],
                quote_len.buffer_info()[0],
                quote_buf.buffer_info()[0],
            )
        )
        try:
            fcntl.ioctl(fd, SGXIOC_GEN_DCAP_QUOTE, arg, True)
        except OSError as e:
            raise RatlsError(f"SGXIOC_GEN_DCAP_QUOTE failed ({e.strerror})")
        return quote_buf.tobytes()[: quote_len[0]]
    finally:
        os.close(fd)


def make_ratls_certificate(
    common_name: str = "Occlum RA-TLS", device: str = SGX_DEVICE
) -> CertAndKey:
    """A new key and its RA-TLS certificate, quoted by this enclave."""
    return make_certificate(lambda data: dcap_quote(data, device), common_name)


def server_context(cert: CertAndKey | None = None) -> ssl.SSLContext:
    """A TLS server context presenting ``cert`` (a new RA-TLS certificate if None). ``ssl``
    loads keys only from files: they are written to a private temporary directory (in the
    instance's own file system) and removed at once."""
    cert = make_ratls_certificate() if cert is None else cert
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="ratls-") as tmp:
        cert_file = os.path.join(tmp, "cert.pem")
        key_file = os.path.join(tmp, "key.pem")
        with open(os.open(cert_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(cert.cert_pem)
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(cert.key_pem)
        ctx.load_cert_chain(cert_file, key_file)
    return ctx
