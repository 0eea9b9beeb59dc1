"""The requester's side of the broker's API, for programs and an init inside an instance.

``fetch_secret(url, name, make_quote)``: asks for a challenge, makes an ephemeral X25519 key,
has ``make_quote`` produce a quote whose report data is ``report_data_for(nonce, pubkey)``
(inside an instance: ``dev_sgx_quote``, ``SGXIOC_GEN_DCAP_QUOTE`` on ``/dev/sgx``), sends it,
and opens the envelope. Only the standard library and ``crypto.envelope`` are used, so a
Python program inside needs this module, ``occlum.crypto.envelope``, ``occlum.errors`` and
``cryptography``.
"""

from __future__ import annotations

import array
import base64
import fcntl
import hashlib
import json
import struct
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from occlum.crypto.envelope import Envelope, EnvelopeError, EphemeralKey
from occlum.errors import UserError

# Occlum's /dev/sgx ioctls (_IOR('s', 7, u32) and _IOWR('s', 8, sgxioc_gen_dcap_quote_arg_t))
SGXIOC_GET_DCAP_QUOTE_SIZE = 0x80047307
SGXIOC_GEN_DCAP_QUOTE = 0xC0187308


class KbsError(UserError):
    """The broker refused, or could not be reached; the message is its one-line reason."""


def report_data_for(nonce: bytes, pubkey: bytes) -> bytes:
    """SHA-256(nonce || pubkey) then 32 zero bytes (the broker checks the same binding)."""
    return hashlib.sha256(nonce + pubkey).digest() + bytes(32)


def dev_sgx_quote(report_data: bytes, device: str = "/dev/sgx") -> bytes:
    """A DCAP quote over ``report_data`` (64 bytes) from Occlum's ``/dev/sgx``: the quoter
    ``fetch_secret`` takes, for a program inside an instance. The ioctl's argument holds
    pointers (report data, length, buffer); ``array`` buffers give their addresses and stay
    alive across the call."""
    if len(report_data) != 64:
        raise ValueError("report data is 64 bytes")
    try:
        with open(device, "rb", buffering=0) as dev:
            size = array.array("I", [0])
            fcntl.ioctl(dev, SGXIOC_GET_DCAP_QUOTE_SIZE, size, True)
            data = array.array("B", report_data)
            length = array.array("I", [size[0]])
            quote = array.array("B", bytes(size[0]))
            addresses = (data.buffer_info()[0], length.buffer_info()[0], quote.buffer_info()[0])
            arg = bytearray(struct.pack("<QQQ", *addresses))
            fcntl.ioctl(dev, SGXIOC_GEN_DCAP_QUOTE, arg, True)
    except OSError as e:
        raise KbsError(f"cannot make a quote with {device}: {e.strerror}")
    return quote.tobytes()[: length[0]]


def _post(url: str, obj: dict[str, Any], timeout: float) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(obj).encode(), headers={"Content-Type": "application/json"},
        method="POST",
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read()).get("error", e.reason)
        except ValueError:
            reason = e.reason
        raise KbsError(f"key broker refused ({e.code}): {reason}")
    except (urllib.error.URLError, OSError) as e:
        raise KbsError(f"cannot reach the key broker at {url}: {e}")
    except ValueError:
        raise KbsError(f"the key broker at {url} did not answer JSON")
    if not isinstance(answer, dict):
        raise KbsError(f"the key broker at {url} did not answer a JSON object")
    return answer


def _b64(answer: dict[str, Any], key: str) -> bytes:
    try:
        return base64.b64decode(answer[key], validate=True)
    except (KeyError, TypeError, ValueError):
        raise KbsError(f"the key broker's answer has no valid {key!r}")


def fetch_secret(
    url: str, name: str, make_quote: Callable[[bytes], bytes], timeout: float = 30.0
) -> bytes:
    """The secret ``name`` from the broker at ``url`` (``http://host:port``)."""
    base = url.rstrip("/")
    nonce = _b64(_post(f"{base}/v1/challenge", {}, timeout), "nonce")
    key = EphemeralKey()
    quote = make_quote(report_data_for(nonce, key.public_raw))
    b64 = base64.b64encode
    answer = _post(
        f"{base}/v1/secret/{name}",
        {"nonce": b64(nonce).decode(), "quote": b64(quote).decode(),
         "pubkey": b64(key.public_raw).decode()},
        timeout,
    )  # fmt: skip
    env = Envelope(_b64(answer, "pubkey"), _b64(answer, "iv"), _b64(answer, "ciphertext"))
    try:
        return key.open(env, nonce, name.encode())
    except EnvelopeError as e:
        raise KbsError(str(e))
